"""`make data` on a fresh clone: no DVC cache and no remote, so it regenerates data/ and checks it against data.dvc.

Runs the real Makefile, DVC and collector in a scratch project with tiny `collect:` params."""
import os, shutil, subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY


# the scratch project borrows this project's .venv: never let its `make setup` reinstall into it
MAKE = "make SETUP="


def sh(cmd, cwd, check=True):
    r = subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "MAKEFLAGS": ""})
    if check: assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    p = tmp_path_factory.mktemp("proj")
    for f in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(ROOT / f, p / f)
    for d in (".venv", ".cache"):
        if (ROOT / d).exists(): (p / d).symlink_to(ROOT / d)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["collect"].update(TINY, txs=150, later_txs=60)
    (p / "params.yaml").write_text(yaml.safe_dump(params))
    (p / ".gitignore").write_text("/data\n.venv\n.cache\n")
    sh("git init -q && git config user.email t@t && git config user.name t && .venv/bin/dvc init -q && "
       f".venv/bin/dvc config core.analytics false && {MAKE} -s data-record", p)
    assert (p / "data.dvc").exists() and (p / "data" / "later" / "accesses.parquet").exists()
    return p


def test_fresh_clone_regenerates_exactly(project):
    recorded = (project / "data.dvc").read_text()
    shutil.rmtree(project / "data"); shutil.rmtree(project / ".dvc" / "cache", ignore_errors=True)
    r = sh(f"{MAKE} data", project)
    assert "regenerated and verified against data.dvc" in r.stdout
    assert (project / "data.dvc").read_text() == recorded
    # the regenerated copy went into the cache, so the next `make data` is a plain checkout
    shutil.rmtree(project / "data")
    assert "data/ from the DVC cache" in sh(f"{MAKE} data", project).stdout


def test_different_data_fails_loudly(project):
    dvc = project / "data.dvc"
    recorded = dvc.read_text()
    try:
        dvc.write_text(recorded.replace(yaml.safe_load(recorded)["outs"][0]["md5"], "0" * 32 + ".dir"))
        shutil.rmtree(project / "data"); shutil.rmtree(project / ".dvc" / "cache", ignore_errors=True)
        r = sh(f"{MAKE} data", project, check=False)
        assert r.returncode != 0
        assert "differs from what data.dvc records" in r.stdout + r.stderr
    finally:
        dvc.write_text(recorded)
