"""The collector CLI, run for real: py-evm executing the published contract bytecode."""
import hashlib, json, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "accounts=10", "--set", "tokens=3", "--set", "txs_per_block=50", "--set", "nft_ids=8"]


def run_collect(out: Path, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "mlproj.collect", "--out", str(out), *SMALL, *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def digest(d: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.glob("*.parquet"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("collect")
    out = {name: (base / name, run_collect(base / name, *args))
           for name, args in {"a": ["--txs", "300"], "b": ["--txs", "300"], "seed1": ["--txs", "300", "--seed", "1"]}.items()}
    return out


def test_same_arguments_give_identical_files(runs):
    assert digest(runs["a"][0]) == digest(runs["b"][0])
    assert set(digest(runs["a"][0])) == {"txs.parquet", "accesses.parquet"}


def test_new_seed_new_transactions_same_contracts(runs):
    a_txs, s_txs = (pd.read_parquet(runs[k][0] / "txs.parquet") for k in ("a", "seed1"))
    assert not set(a_txs.tx_hash) & set(s_txs.tx_hash)
    # same deployment: the router (swaps) and WETH9 (deposits) sit at the same addresses in both runs
    for selector in ("0x38ed1739", "0xd0e30db0"):
        called = [set(t.to[t.selector == selector]) for t in (a_txs, s_txs)]
        assert len(called[0]) == 1 and called[0] == called[1], selector
    assert a_txs.block.min() == s_txs.block.min()


def test_schema_and_content(runs):
    d, summary = runs["a"]
    txs, acc = pd.read_parquet(d / "txs.parquet"), pd.read_parquet(d / "accesses.parquet")
    assert summary["txs"] == len(txs) == 300 and summary["accesses"] == len(acc)
    assert txs.tx_hash.str.fullmatch(r"0x[0-9a-f]{64}").all()
    assert txs.sender.str.fullmatch(r"0x[0-9a-f]{40}").all() and txs.to.str.fullmatch(r"0x[0-9a-f]{40}").all()
    assert txs.selector.str.fullmatch(r"0x[0-9a-f]{8}").all()
    assert (txs.selector == txs.input.str[:10]).all()
    assert set(txs.status) <= {"ok", "revert"} and (txs.gas_used >= 21_000).all()
    assert acc.slot.str.fullmatch(r"0x[0-9a-f]{64}").all() and set(acc.op) == {"R", "W"}
    # steps run 0..n-1 in every transaction, and every access belongs to a recorded transaction
    steps = acc.groupby("tx_hash").step.agg(["min", "max", "count"])
    assert (steps["min"] == 0).all() and (steps["max"] == steps["count"] - 1).all()
    assert set(acc.tx_hash) <= set(txs.tx_hash)
    # blocks are consecutive and tx_index restarts in each
    assert (txs.groupby("block").tx_index.min() == 0).all()
    # the mix: many selectors, swaps among them (swapExactTokensForTokens)
    assert txs.selector.nunique() >= 8 and (txs.selector == "0x38ed1739").any()


def test_zipf_skew(runs):
    txs = pd.read_parquet(runs["a"][0] / "txs.parquet")
    counts = txs.sender.value_counts()
    assert counts.iloc[0] > 3 * counts.median()


def test_bad_set_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mlproj.collect", "--out", str(tmp_path / "x"), "--set", "nope=1"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown key" in r.stderr and not (tmp_path / "x").exists()


def test_reverted_transactions_keep_their_accesses(runs):
    """Accesses are recorded as executed, so a transaction that reverts still shows what it read before failing."""
    d, _ = runs["a"]
    txs, acc = pd.read_parquet(d / "txs.parquet"), pd.read_parquet(d / "accesses.parquet")
    reverted = set(txs.tx_hash[txs.status == "revert"])
    assert reverted, "the workload should produce some reverts (e.g. transfers beyond a balance)"
    assert acc.tx_hash.isin(reverted).any()
