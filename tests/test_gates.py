"""The data gate in the real prepare stage and the model gate in the real export stage (papermill): a failing gate
is recorded with the check and its numbers, the stage finishes (an experiment is not a release), and the
registry refuses to promote what failed."""
import json, subprocess, sys

from mlproj.export import build_mar
from mlproj.registry import Registry
from conftest import papermill


def test_a_failed_data_gate_is_recorded_and_prepare_finishes(tiny_raw, tmp_path):
    r = papermill("02_data.ipynb", tmp_path / "nb.ipynb", raw_dir=tiny_raw, out_dir=tmp_path / "prep", min_train_txs=100000,
                  profile_path=tmp_path / "profile.json", sizes_path=tmp_path / "sizes.json", gate_path=tmp_path / "gate.json")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert not gate["passed"] and gate["failed"] == 1 and "train transactions: " in gate["message"] and "is below the minimum 100000" in gate["message"]
    assert "cannot be promoted" in (tmp_path / "nb.ipynb").read_text()  # said in the stage's own output
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == ["test.parquet", "train.parquet", "valid.parquet"]


def test_data_gate_measures_drift_against_production(tiny_raw, tiny_model, tmp_path):
    "Production was trained on other contracts: the new data drifts; the same data against itself does not."
    model_path, _ = tiny_model
    other = tmp_path / "other_profile.json"
    other.write_text(json.dumps({"contracts": {"0x" + "99" * 20: 1.0}, "selectors": {"0x00000000": 1.0}}))
    Registry(tmp_path / "registry").promote(build_mar(model_path, tmp_path / "v1", "mlproj", "1.0.0", {"version": "1.0.0", "git_revision": "x",
                                            "data_dvc": {"md5": "m"}}, profile_path=other))
    r = papermill("02_data.ipynb", tmp_path / "nb.ipynb", raw_dir=tiny_raw, out_dir=tmp_path / "prep", registry_dir=tmp_path / "registry",
                  profile_path=tmp_path / "profile.json", sizes_path=tmp_path / "sizes.json", gate_path=tmp_path / "gate1.json")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "drift of contracts against production (JS): 1 is above the maximum 0.1" in json.loads((tmp_path / "gate1.json").read_text())["message"]

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


def test_a_worse_experiment_finishes_and_its_promotion_is_refused(tiny_model, tmp_path):
    "With a model in production, an export whose model gate fails still writes its archive and report; make promote refuses it."
    model_path, _ = tiny_model
    reg = Registry(tmp_path / "registry")
    reg.promote(build_mar(model_path, tmp_path / "v1", "mlproj", "1.4.2", {"version": "1.4.2", "git_revision": "x", "data_dvc": {"md5": "m"}}))
    r = papermill("07_export.ipynb", tmp_path / "nb.ipynb", out_dir=tmp_path / "models", report_path=tmp_path / "export.json",
                  registry_dir=tmp_path / "registry", min_acc1=0.99)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rep = json.loads((tmp_path / "export.json").read_text())
    assert not rep["gate"]["passed"] and not rep["gates_passed"] and "acc@1 on test:" in rep["gate"]["message"]
    mar = tmp_path / "models" / "mlproj.mar"
    assert mar.exists()
    p = subprocess.run([sys.executable, "-m", "mlproj.registry", "promote", str(mar), "--registry", str(tmp_path / "registry")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "is refused" in p.stderr and "below the minimum 0.99" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert reg.production() == "1.4.2" and list(reg.index()["versions"]) == ["1.4.2"]


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
