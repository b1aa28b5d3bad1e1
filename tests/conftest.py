import shutil, subprocess, sys
from pathlib import Path

import pytest

from mlproj.collect import TINY, collect_tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    "A small real collection (py-evm, real bytecode): 600 transactions in 20 blocks. Treat as read-only."
    out = tmp_path_factory.mktemp("raw") / "tiny"
    return collect_tiny(out, txs=600)


@pytest.fixture
def raw_copy(tiny_raw, tmp_path) -> Path:
    "A private copy of `tiny_raw` that a test may break."
    return Path(shutil.copytree(tiny_raw, tmp_path / "raw"))


@pytest.fixture(scope="session")
def parts(tiny_raw):
    "`tiny_raw` split by block into train, valid and test (0.6 / 0.2 / 0.2). Treat as read-only."
    from mlproj.data import load_raw, split, to_sequences
    return split(to_sequences(*load_raw(tiny_raw)), 0.2, 0.2)


@pytest.fixture(scope="session")
def tiny_model(tiny_raw, tmp_path_factory):
    "A tiny trained model (scheme 4, full prompt) and its splits: `(model_path, parts)`."
    from mlproj.train import train_tiny
    return train_tiny(tmp_path_factory.mktemp("tiny_model"), raw=tiny_raw)


def papermill(nb, out, **params):
    "Run notebook `nb` of nbs/ with papermill, as a DVC stage does; return the finished process."
    args = [a for k, v in params.items() for a in ("-p", k, str(v))]
    return subprocess.run([sys.executable, "-m", "papermill", "-k", "python3", "--log-level", "WARNING",
                           str(ROOT / "nbs" / nb), str(out), *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
