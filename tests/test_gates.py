"""The data gate in the real prepare stage and the model gate in the real export stage (papermill): a failing gate
stops the stage with the check and its numbers, and writes nothing."""
import json

from mlproj.export import build_mar
from mlproj.registry import Registry
from conftest import papermill


def test_data_gate_stops_prepare_on_too_few_transactions(tiny_raw, tmp_path):
    r = papermill("02_data.ipynb", tmp_path / "nb.ipynb", raw_dir=tiny_raw, out_dir=tmp_path / "prep", min_train_txs=100000,
                  profile_path=tmp_path / "profile.json", sizes_path=tmp_path / "sizes.json", gate_path=tmp_path / "gate.json")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "data gate failed" in out and "train transactions: " in out and "is below the minimum 100000" in out, out[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]  # nothing written


def test_data_gate_measures_drift_against_production(tiny_raw, tiny_model, tmp_path):
    "Production was trained on other contracts: the new data drifts; the same data against itself does not."
    model_path, _ = tiny_model
    other = tmp_path / "other_profile.json"
    other.write_text(json.dumps({"contracts": {"0x" + "99" * 20: 1.0}, "selectors": {"0x00000000": 1.0}}))
    Registry(tmp_path / "registry").promote(build_mar(model_path, tmp_path / "v1", "mlproj", "1.0.0", {"version": "1.0.0", "git_revision": "x",
                                            "data_dvc": {"md5": "m"}}, profile_path=other))
    r = papermill("02_data.ipynb", tmp_path / "nb.ipynb", raw_dir=tiny_raw, out_dir=tmp_path / "prep", registry_dir=tmp_path / "registry",
                  profile_path=tmp_path / "profile.json", sizes_path=tmp_path / "sizes.json")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "drift of contracts against production (JS): 1 is above the maximum 0.1" in out, out[-3000:]
    assert not (tmp_path / "prep").exists()

    ok = papermill("02_data.ipynb", tmp_path / "nb2.ipynb", raw_dir=tiny_raw, out_dir=tmp_path / "prep2", gate_path=tmp_path / "gate.json",
                   profile_path=tmp_path / "profile2.json", sizes_path=tmp_path / "sizes2.json")
    assert ok.returncode == 0, ok.stderr[-3000:]
    Registry(tmp_path / "registry").promote(build_mar(model_path, tmp_path / "v2", "mlproj", "2.0.0", {"version": "2.0.0", "git_revision": "x",
                                            "data_dvc": {"md5": "m"}}, profile_path=tmp_path / "profile2.json"))
    again = papermill("02_data.ipynb", tmp_path / "nb3.ipynb", raw_dir=tiny_raw, out_dir=tmp_path / "prep3", registry_dir=tmp_path / "registry",
                      profile_path=tmp_path / "profile3.json", sizes_path=tmp_path / "sizes3.json", gate_path=tmp_path / "gate3.json")
    assert again.returncode == 0, again.stderr[-3000:]
    drift = [c for c in json.loads((tmp_path / "gate3.json").read_text())["checks"] if c["check"].startswith("drift")]
    assert len(drift) == 2 and all(c["ok"] and c["value"] == 0.0 for c in drift)


def test_model_gate_stops_export_and_writes_nothing(tmp_path):
    r = papermill("07_export.ipynb", tmp_path / "nb.ipynb", out_dir=tmp_path / "models", report_path=tmp_path / "export.json", min_acc1=0.99)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "model gate failed" in out and "acc@1 on test:" in out and "below the minimum 0.99" in out, out[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]


def test_export_compares_with_production_on_the_same_transactions(tiny_model, tmp_path):
    "With a model in production, the export stage runs both on the same test transactions and versions the candidate after it."
    model_path, _ = tiny_model
    Registry(tmp_path / "registry").promote(build_mar(model_path, tmp_path / "v1", "mlproj", "1.4.2", {
        "version": "1.4.2", "git_revision": "x", "data_dvc": {"md5": "other data"}, "params": {}, "metrics": {}}))
    r = papermill("07_export.ipynb", tmp_path / "nb.ipynb", out_dir=tmp_path / "models", report_path=tmp_path / "export.json",
                  registry_dir=tmp_path / "registry", max_regression=1.0)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rep = json.loads((tmp_path / "export.json").read_text())
    assert (rep["version"], rep["parent"]) == ("2.0.0", "1.4.2")  # other data: a major version
    vs = [c for c in rep["gate"]["checks"] if c["check"].startswith("acc@1 change against production 1.4.2")]
    assert len(vs) == 1 and vs[0]["value"] is not None and "candidate" in vs[0]["note"]
