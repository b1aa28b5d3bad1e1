"""Mainnet replay, run for real: four recorded mainnet blocks re-executed on py-evm, no mocks."""
import dataclasses, os, subprocess, sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlproj.collect import ACCESSES_SCHEMA, TXS_SCHEMA
from mlproj.replay import GasMismatch, load_block, replay, replay_block

ROOT = Path(__file__).resolve().parents[1]
MAINNET = Path(os.environ.get("MLPROJ_MAINNET") or ROOT.parent / "shared" / "data" / "mainnet")
FILES = sorted(MAINNET.glob("*.json")) if MAINNET.is_dir() else []
pytestmark = pytest.mark.skipif(len(FILES) != 4, reason=f"the four mainnet block files are not in {MAINNET} "
                                                        "(../shared/data/mainnet beside the project, or $MLPROJ_MAINNET)")

# what a reference replay of the four blocks recorded
TXS = {21688509: 8, 21872325: 161, 22188088: 28, 22615247: 26}
ACCESSES = {21688509: 284, 21872325: 2739, 22188088: 253, 22615247: 334}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "raw"
    summary = replay(FILES, out, progress=False)
    return out, summary, pd.read_parquet(out / "txs.parquet"), pd.read_parquet(out / "accesses.parquet")


def test_gas_adds_up_in_every_block(raw):
    _, _, txs, _ = raw
    header_gas = {b.number: b.header["gas_used"] for b in map(load_block, FILES)}
    assert txs.groupby("block").gas_used.sum().to_dict() == header_gas


def test_totals_match_the_reference_replay(raw):
    _, summary, txs, acc = raw
    assert (len(txs), len(acc)) == (223, 3610)
    assert len(set(zip(acc.address, acc.slot))) == 1160
    assert acc.address.nunique() == 152
    assert {k: summary[k] for k in ("blocks", "txs", "accesses", "pairs", "contracts")} == \
        dict(blocks=4, txs=223, accesses=3610, pairs=1160, contracts=152)
    assert txs.groupby("block").size().to_dict() == TXS
    assert acc.merge(txs[["tx_hash", "block"]], on="tx_hash").groupby("block").size().to_dict() == ACCESSES


def test_files_follow_the_raw_schema(raw):
    out, _, txs, acc = raw
    assert pq.read_schema(out / "txs.parquet").equals(TXS_SCHEMA)
    assert pq.read_schema(out / "accesses.parquet").equals(ACCESSES_SCHEMA)
    assert txs.tx_hash.str.fullmatch(r"0x[0-9a-f]{64}").all() and txs.tx_hash.is_unique
    assert txs.sender.str.fullmatch(r"0x[0-9a-f]{40}").all()
    assert txs.to.str.fullmatch(r"(0x[0-9a-f]{40})?").all()
    assert txs.selector.str.fullmatch(r"(0x[0-9a-f]{8})?").all()
    assert txs.input.str.fullmatch(r"0x([0-9a-f]{2})*").all()
    assert (txs.selector == txs.input.str[:10].where(txs.input.str.len() >= 10, "")).all()
    assert set(txs.status) == {"ok", "revert"}
    assert txs.groupby("block").tx_index.apply(lambda s: list(s) == list(range(len(s)))).all()
    assert set(acc.op) == {"R", "W"}
    assert acc.address.str.fullmatch(r"0x[0-9a-f]{40}").all() and acc.slot.str.fullmatch(r"0x[0-9a-f]{64}").all()
    assert set(acc.tx_hash) <= set(txs.tx_hash)
    assert acc.groupby("tx_hash", sort=False).step.apply(lambda s: list(s) == list(range(len(s)))).all()


def test_a_block_whose_gas_does_not_add_up_is_refused():
    block = load_block(MAINNET / "21688509.json")
    bad = dataclasses.replace(block, header=dict(block.header, gas_used=block.header["gas_used"] + 1))
    with pytest.raises(GasMismatch, match="block 21688509"):
        replay_block(bad)


def test_blockhash_needs_the_ancestors():
    block = load_block(MAINNET / "22188088.json")
    replay_block(block)
    with pytest.raises(GasMismatch, match="block 22188088"):
        replay_block(dataclasses.replace(block, prev_hashes=[]))


def test_cli_replays_into_the_raw_schema(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mlproj.collect", "--replay", str(MAINNET / "21688509.json"),
                        "--out", str(tmp_path / "raw")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    txs = pd.read_parquet(tmp_path / "raw" / "txs.parquet")
    assert len(txs) == 8 and txs.gas_used.sum() == load_block(MAINNET / "21688509.json").header["gas_used"]
