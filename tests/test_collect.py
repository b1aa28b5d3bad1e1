"""The collector CLI, run for real: py-evm executing the published contract bytecode."""
import hashlib, json, os, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlproj.derive import first_mismatch, kind

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "accounts=10", "--set", "tokens=3", "--set", "txs_per_block=50", "--set", "nft_ids=8"]
SEED = yaml.safe_load((ROOT / "params.yaml").read_text())["collect"]["seed"]  # the training workload's


def run_collect(out: Path | None, *args: str, cwd: Path = ROOT) -> dict:
    where = ["--out", str(out)] if out else []
    r = subprocess.run([sys.executable, "-m", "mlproj.collect", *where, *SMALL, *args],
                       cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def digest(d: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.glob("*.parquet"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("collect")
    out = {name: (base / name, run_collect(base / name, *args))
           for name, args in {"a": ["--txs", "300"], "b": ["--txs", "300"], "seed1": ["--txs", "300", "--seed", "1"],
                              "later": ["--txs", "150", "--seed", "1", "--after", f"{SEED}:300"]}.items()}
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


def test_later_traffic_continues_the_chain(runs):
    """`--after SEED:TXS` runs the training workload first, unrecorded: what is recorded is the traffic that follows it."""
    (a, _), (later, summary) = runs["a"], runs["later"]
    a_txs, l_txs = pd.read_parquet(a / "txs.parquet"), pd.read_parquet(later / "txs.parquet")
    assert l_txs.block.min() == a_txs.block.max() + 1 == summary["first_block"]
    assert not set(a_txs.tx_hash) & set(l_txs.tx_hash)
    assert len(l_txs) == summary["txs"] == 150
    # the same deployment: the router sits at the same address
    assert set(l_txs.to[l_txs.selector == "0x38ed1739"]) == set(a_txs.to[a_txs.selector == "0x38ed1739"])


def test_chain_is_one_run_of_the_same_bytes(runs, tmp_path):
    """`--chain` (make data-regen) writes every folder of the project's chain in one run, as the separate runs would."""
    (tmp_path / "pyproject.toml").touch()
    os.symlink(ROOT / ".cache", tmp_path / ".cache")  # the contracts' npm packages
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["collect"].update(seed=SEED, txs=300, later_seed=1, later_txs=150)
    params["retrain"]["batches"] = [{"seed": 2, "txs": 100, "after": "data/later"}]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))  # the mix keeps its order
    summaries = run_collect(None, "--chain", cwd=tmp_path)
    assert list(summaries) == ["data/synthetic", "data/later", "data/batches/seed-2"]
    assert digest(tmp_path / "data/synthetic") == digest(runs["a"][0])
    assert digest(tmp_path / "data/later") == digest(runs["later"][0])
    batch = run_collect(tmp_path / "batch", "--txs", "100", "--seed", "2", "--after", f"{SEED}:300", "1:150")
    assert digest(tmp_path / "data/batches/seed-2") == digest(tmp_path / "batch")
    assert batch["first_block"] == summaries["data/later"]["last_block"] + 1


def test_chain_takes_no_seed(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mlproj.collect", "--chain", "--seed", "3"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--chain takes every seed and size from params.yaml" in r.stderr


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


def test_every_access_resolves_from_its_derivation(runs):
    d, _ = runs["a"]
    txs, acc = pd.read_parquet(d / "txs.parquet"), pd.read_parquet(d / "accesses.parquet")
    assert first_mismatch(txs, acc) is None
    assert not acc.derivation.str.contains("?", regex=False).any()  # our contracts hash only known keys
    # balances keyed by the sender and by call-data words, the pairs' reserves at constant slots
    assert {"const", "map:sender", "map:arg"} <= set(acc.derivation.map(kind))


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
