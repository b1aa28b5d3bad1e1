"""Mainnet replay, run for real: recorded mainnet blocks of every source re-executed on py-evm, no mocks."""
import dataclasses, gzip, json, os, shutil, subprocess, sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlproj.collect import ACCESSES_SCHEMA, TXS_SCHEMA
from mlproj.derive import first_mismatch
from mlproj.replay import GasMismatch, ReplayError, load_block, plan, read_json, replay, replay_block, replay_erigon

ROOT = Path(__file__).resolve().parents[1]
MAINNET = Path(os.environ.get("MLPROJ_MAINNET") or ROOT.parent / "shared" / "data" / "mainnet")
KETH = sorted(MAINNET.glob("*.json")) if MAINNET.is_dir() else []
pytestmark = pytest.mark.skipif(len(KETH) != 4, reason=f"the recorded mainnet sources are not in {MAINNET} "
                                                       "(../shared/data/mainnet beside the project, or $MLPROJ_MAINNET)")
ZETH, ERIGON = MAINNET / "zeth" / "1-18884864.json.gz", MAINNET / "erigon"
RAIKO = MAINNET / "raiko" / "ethereum-20612842.json.gz"

# what a reference replay of the four keth blocks recorded
TXS = {21688509: 8, 21872325: 161, 22188088: 28, 22615247: 26}
ACCESSES = {21688509: 284, 21872325: 2739, 22188088: 253, 22615247: 334}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "raw"
    summary = replay(KETH, out, progress=False)
    return out, summary, pd.read_parquet(out / "txs.parquet"), pd.read_parquet(out / "accesses.parquet")


def test_gas_adds_up_in_every_block(raw):
    _, _, txs, _ = raw
    header_gas = {b.number: b.header["gas_used"] for b in map(load_block, KETH)}
    assert txs.groupby("block").gas_used.sum().to_dict() == header_gas


def test_totals_match_the_reference_replay(raw):
    _, summary, txs, acc = raw
    assert (len(txs), len(acc)) == (223, 3610)
    assert len(set(zip(acc.address, acc.slot))) == 1160
    assert acc.address.nunique() == 152
    assert {k: summary["total"][k] for k in ("blocks", "txs", "accesses", "pairs", "contracts", "gas_equal_blocks")} == \
        dict(blocks=4, txs=223, accesses=3610, pairs=1160, contracts=152, gas_equal_blocks=4)
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
    checks = pd.read_parquet(out / "checks.parquet")
    assert list(checks.tx_hash) == list(txs.tx_hash) and checks.faithful.all() and set(checks.check) == {"gas"}


def test_every_replayed_access_resolves_from_its_derivation(raw):
    _, _, txs, acc = raw
    assert first_mismatch(txs, acc) is None
    assert acc.derivation.str.contains("?", regex=False).mean() < 0.06  # keys computed at run time, opaque slots


@pytest.mark.parametrize("path,block,n_txs", [(ZETH, 18884864, 30), (RAIKO, 20612842, 32)])
def test_zeth_and_raiko_blocks_replay_to_their_headers_gas(path, block, n_txs):
    b = load_block(path)
    txs, acc = replay_block(b)
    assert (b.number, len(txs)) == (block, n_txs) and len(acc) > n_txs
    assert sum(t["gas_used"] for t in txs) == b.header["gas_used"]
    assert first_mismatch(pd.DataFrame(txs), pd.DataFrame(acc)) is None


def _erigon_slice(n: int = 12):
    "The first `n` transactions of erigon block 17073191, both traces cut alike."
    pre, calls = (read_json(ERIGON / f"17073191.{k}.json.gz") for k in ("prestate", "calls"))
    pre[0]["response"]["result"] = pre[0]["response"]["result"][:n]
    calls[0]["response"]["result"] = calls[0]["response"]["result"][:n]
    return pre, calls


def test_erigon_transactions_replay_one_by_one_with_their_slot_sets_checked():
    pre, calls = _erigon_slice()
    txs, acc, checks = replay_erigon("17073191", pre, calls)
    assert len(txs) == len(checks) == 12 and {t["block"] for t in txs} == {17073191}
    assert [c["tx_hash"] for c in checks] == [t["tx_hash"] for t in txs] == [r["txHash"] for r in pre[0]["response"]["result"]]
    # all but the block's one contract creation (tx 6): the tracer lists no storage for a contract that did not exist yet
    assert [c["tx_index"] for c in checks if not c["faithful"]] == [6] and txs[6]["to"] == ""
    assert first_mismatch(pd.DataFrame(txs), pd.DataFrame(acc)) is None
    touched = {t["tx_hash"]: set() for t in txs}
    for a in acc: touched[a["tx_hash"]].add((a["address"], a["slot"]))
    for c in checks:
        assert c["replay_slots"] == len(touched[c["tx_hash"]])
        assert c["faithful"] == (touched[c["tx_hash"]] == {(a.lower(), "0x" + format(int(k, 16), "064x"))
                                                           for a, v in pre[0]["response"]["result"][c["tx_index"]]["result"].items()
                                                           if v for k in (v.get("storage") or {})})


def _write_gz(path: Path, obj) -> Path:
    path.write_bytes(gzip.compress(json.dumps(obj).encode())); return path


def _digest(node):
    "The first pruned subtree (`Digest`) in a serialized raiko trie."
    d = node["data"] if node else "Null"
    if isinstance(d, dict):
        (kind, v), = d.items()
        if kind == "Digest": return d
        for child in (v if kind == "Branch" else [v[1]] if kind == "Extension" else []):
            if (found := _digest(child)) is not None: return found
    return None


def test_every_unfaithful_replay_is_refused_naming_file_block_and_transaction(tmp_path):
    b = load_block(ZETH)
    rows = replay_block(b)[0]
    # a gas total that differs from the header
    with pytest.raises(GasMismatch, match=r"1-18884864.json.gz: block 18884864: its 30 transactions used \d+ gas, the header says"):
        replay_block(dataclasses.replace(b, header=dict(b.header, gas_used=b.header["gas_used"] - 1)))
    # a missing account: the sender of transaction 5 (named at its first transaction)
    sender = rows[5]["sender"]
    first = next(t["tx_index"] for t in rows if t["sender"] == sender)
    gone = dataclasses.replace(b, pre={a: v for a, v in b.pre.items() if a.lower() != sender})
    with pytest.raises(ReplayError, match=f"block 18884864: transaction {first}: its sender {sender} is missing from the pre-state"):
        replay_block(gone)
    # a transaction that cannot be applied (a stale nonce)
    with pytest.raises(ReplayError, match="block 18884864: transaction 1 cannot be applied"):
        replay_block(dataclasses.replace(b, txs=b.txs[:1] * 2))
    # an unknown format, and an erigon trace without its pair
    (tmp_path / "odd.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(ReplayError, match="odd.json: unknown format"):
        plan([tmp_path / "odd.json"])
    with pytest.raises(ReplayError, match="erigon block 17073191: its calls trace is missing"):
        plan([ERIGON / "17073191.prestate.json.gz"])
    # a raiko proof that does not hash up to the parent's state root: a pruned subtree's hash changed
    d = read_json(RAIKO)
    _digest(d["parent_state_trie"])["Digest"] = "0x" + "11" * 32
    bad = _write_gz(tmp_path / "bad.json.gz", d)
    # nothing is written: an earlier replay in the output folder stays as it was
    out = tmp_path / "out"; replay([KETH[0]], out, progress=False)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    with pytest.raises(ReplayError, match="bad.json.gz: block 20612842: state: the trie nodes hash to"):
        replay([ZETH, bad], out, progress=False)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_cli_replays_any_shape_into_the_raw_schema(tmp_path):
    for f in (KETH[0], ZETH):
        shutil.copy(f, tmp_path / f.name)
    r = subprocess.run([sys.executable, "-m", "mlproj.replay", str(tmp_path / KETH[0].name), str(tmp_path / ZETH.name),
                        "--out", str(tmp_path / "raw")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    txs = pd.read_parquet(tmp_path / "raw" / "txs.parquet")
    assert txs.groupby("block").size().to_dict() == {18884864: 30, 21688509: 8}
    summary = json.loads(r.stdout)
    assert set(summary["sources"]) == {"keth", "zeth"} and summary["total"]["txs"] == 38
