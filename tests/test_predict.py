"""`python -m mlproj.predict` on a real .mar archive built by torch-model-archiver."""
import json, subprocess, sys, zipfile

import pytest

from mlproj.export import build_mar, model_card
from conftest import ROOT


@pytest.fixture(scope="module")
def mar(tiny_model, tmp_path_factory):
    path, parts = tiny_model
    return build_mar(path, tmp_path_factory.mktemp("mar"), "tiny", "2.0.1", model_card("2.0.1")), parts["test"].to_dict("records")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mlproj.predict", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_archive_holds_model_card_and_params(mar):
    path, _ = mar
    with zipfile.ZipFile(path) as z:
        card = json.loads(z.read("model_card.json"))
        assert json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"] == "2.0.1"
    assert card["version"] == "2.0.1" and len(card["git_revision"]) == 40
    assert set(card) >= {"data_dvc", "params", "metrics"} and card["params"]["collect"]["seed"] == 0


def test_cli_answers_in_order_and_reports_bad_lines(mar, tmp_path):
    path, test = mar
    reqs = []
    for tx in test[:6]:
        reqs.append(json.dumps({"to": tx["to"], "selector": tx["selector"], "sender": tx["sender"], "input": tx["input"], "k": 4,
                                "horizon": 2, "accesses": [{"address": tx["address"][0], "slot": tx["slot"][0]}]}))
    bad = ["", "not json", json.dumps({"to": "0x12"}), json.dumps({**json.loads(reqs[0]), "horizon": 999}), "x" * (1024 * 1024)]
    lines = [reqs[0], bad[0], reqs[1], bad[1], bad[2], reqs[2], bad[3], bad[4], *reqs[3:]]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    r = cli("--model", path, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl")
    assert r.returncode == 0, r.stderr[-2000:]
    out = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == len(lines)
    assert [o.get("field") for o in out] == [None, "body", None, "body", "to", None, "horizon", "body", None, None, None]
    assert all(len(o["next"]) <= 4 and len(o["sequence"]) == 2 and o["model"] == {"name": "tiny", "version": "2.0.1"} for o in out if "next" in o)
    assert json.loads(r.stdout.splitlines()[-1]) == {"lines": 11, "answered": 6, "errors": 5}


def test_cli_refuses_a_non_archive_and_writes_nothing(tmp_path):
    (tmp_path / "in.jsonl").write_text("{}\n")
    (tmp_path / "model.mar").write_text("not a zip")
    r = cli("--model", tmp_path / "model.mar", "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl")
    assert r.returncode != 0 and "expected a .mar archive" in r.stderr
    assert not (tmp_path / "out.jsonl").exists()
