"The committed-outputs check of `make test`, on a scratch project: a fresh run matches, and a default changed without re-running is caught."
import json, shutil, subprocess, sys
from pathlib import Path

import nbformat

from conftest import ROOT

BIN = Path(sys.executable).parent


def _flow(proj: Path) -> subprocess.CompletedProcess:
    "What make test runs: snapshot, nbdev-test --save, tidy, nbdev-clean, stale."
    cmds = [[sys.executable, "-m", "mlproj.outputs", "snapshot", "nbs", "before.json"], [str(BIN / "nbdev-test"), "--save", "nbs"],
            [sys.executable, "-m", "mlproj.outputs", "tidy", "nbs"], [str(BIN / "nbdev-clean")]]
    for c in cmds: subprocess.run(c, cwd=proj, check=True, capture_output=True, text=True)
    return subprocess.run([sys.executable, "-m", "mlproj.outputs", "stale", "nbs", "before.json"], cwd=proj, capture_output=True, text=True)


def test_a_stale_notebook_is_named(tmp_path):
    proj = tmp_path / "proj"; (proj / "nbs").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", proj)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("n = 3  # a default", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import logging, tempfile\nlogging.getLogger('x').warning('noise on stderr')\nprint(tempfile.mkdtemp())\nn * 2")]
    nbformat.write(nb, proj / "nbs" / "01_demo.ipynb")
    _flow(proj)  # as `make notebooks` would leave it, committed
    outs = json.loads((proj / "nbs/01_demo.ipynb").read_text())["cells"][1]["outputs"]
    assert [o.get("text", o.get("data", {}).get("text/plain")) for o in outs] == [["<tmp>\n"], ["6"]], outs  # no stderr, path masked
    assert _flow(proj).returncode == 0  # a fresh run gives the same outputs
    src = (proj / "nbs/01_demo.ipynb").read_text().replace("n = 3  # a default", "n = 4  # a default")
    (proj / "nbs/01_demo.ipynb").write_text(src)  # the default changed, not re-run
    r = _flow(proj)
    assert r.returncode == 1 and "01_demo.ipynb" in r.stderr and "make notebooks" in r.stderr, r.stderr


def test_every_readme_picture_is_committed():
    import re
    readme = (ROOT / "README.md").read_text()
    pics = re.findall(r"!\[[^\]]*\]\((nbs/images/[^)]+)\)", readme)
    assert len(pics) >= 3, pics
    tracked = subprocess.run(["git", "ls-files", "nbs/images"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for p in pics:
        assert (ROOT / p).stat().st_size < 200_000, p  # small
        assert p in tracked, f"{p} is not committed"
