"""make retrain when a late step fails: a scratch project (real git, DVC and py-evm collection) whose pipeline
breaks, then one whose shadow step breaks. Each run must end with ok false and a message that names the step and
says what the run left behind and how to resume or undo, never a traceback, and must promote nothing."""
import json, shutil, subprocess, sys
from pathlib import Path

import yaml

from mlproj.collect import TINY
from mlproj.core import load_params
from mlproj.retrain import retrain

BIN = Path(sys.executable).parent

REPORTS = '''import json, pathlib
for p, v in {"reports/export.json": {"gate": {"passed": True}, "version": "1.0.1", "parent": "1.0.0"},
             "reports/metrics.json": {"test": {"lstm": {"acc@1": 0.9}}, "later": {"lstm": {"acc@1": 0.9}}},
             "reports/gates/data.json": {"passed": True}}.items():
    pathlib.Path(p).parent.mkdir(parents=True, exist_ok=True); pathlib.Path(p).write_text(json.dumps(v))
'''


def scratch(root: Path, cmd: str) -> Path:
    "A git + DVC project with tiny collector params and one stage running `cmd`."
    params = load_params(None)
    params["collect"].update(TINY, txs=60, later_txs=30); params["retrain"].update(batches=[], txs=20)
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    (root / "stage.py").write_text(REPORTS)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"all": {"cmd": cmd, "deps": ["data"]}}}))
    for c in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"], ["git", "add", "-A"],
              ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "scratch"]):
        subprocess.run(c, cwd=root, check=True)
    return root


def test_a_failing_pipeline_ends_with_what_was_left(tmp_path):
    root = scratch(tmp_path / "p", f"{sys.executable} -c \"raise SystemExit('the stage broke')\"")
    rep = retrain(root, promote=True)
    assert not rep["ok"] and list(rep["steps"]) == ["collect", "record", "repro"]
    why = rep["why"]
    assert why.startswith("dvc repro failed:") and "the stage broke" in why, why
    assert "Nothing was promoted" in why and "params.yaml" in why and "data.dvc" in why and "rm -rf data/batches/seed-" in why
    assert json.loads((root / "reports/retrain.json").read_text())["why"] == why
    assert not (root / "registry").exists()


def test_a_failing_shadow_step_ends_with_a_message_not_a_traceback(tmp_path):
    root = scratch(tmp_path / "p", f"{sys.executable} stage.py")
    reg = root / "registry"; (reg / "1.0.0").mkdir(parents=True)
    (reg / "1.0.0" / "mlproj.mar").write_bytes(b"not a zip")  # production's archive is broken: the shadow step cannot load it
    (reg / "index.json").write_text(json.dumps({"name": "mlproj", "production": "1.0.0", "history": ["1.0.0"], "versions": {}}))
    rep = retrain(root)
    assert not rep["ok"] and rep["why"].startswith("shadow failed:") and "Traceback" not in rep["why"], rep["why"]
    assert "Resume" in rep["why"] and "Undo" in rep["why"]
    assert json.loads((reg / "index.json").read_text())["production"] == "1.0.0"
