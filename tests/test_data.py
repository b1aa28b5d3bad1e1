"""Validation of the raw tables, and the prepare stage run for real by papermill."""
import json, subprocess, sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlproj.collect import ACCESSES_SCHEMA, TXS_SCHEMA
from mlproj.data import RawDataError, load_raw, sample, split, to_sequences
from conftest import papermill


def rewrite(path, df, schema=None):
    pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), path)


def set_cell(raw, table, row, column, value):
    df = pd.read_parquet(raw / f"{table}.parquet")
    df.loc[row, column] = value
    rewrite(raw / f"{table}.parquet", df, TXS_SCHEMA if table == "txs" else ACCESSES_SCHEMA)


def error_of(raw) -> RawDataError:
    with pytest.raises(RawDataError) as e:
        load_raw(raw)
    return e.value


@pytest.mark.parametrize("table,column,value,expected", [
    ("txs", "sender", "0xzz" + "0" * 38, "an address: 0x + 40 lowercase hex digits"),          # malformed hex
    ("txs", "tx_hash", "0x" + "ab" * 31, "a transaction hash: 0x + 64 lowercase hex digits"),   # wrong length
    ("accesses", "slot", "0x" + "AB" * 32, "a 32-byte slot: 0x + 64 lowercase hex digits"),     # upper case
    ("accesses", "address", "12" * 20, "an address: 0x + 40 lowercase hex digits"),            # no 0x
    ("accesses", "op", "X", "op 'R' (SLOAD) or 'W' (SSTORE)"),                                  # unknown op
    ("txs", "status", "failed", "status 'ok' or 'revert'"),
])
def test_bad_values_name_file_row_column_expected(raw_copy, table, column, value, expected):
    set_cell(raw_copy, table, 11, column, value)
    e = error_of(raw_copy)
    assert (e.file, e.row, e.column, e.got) == (str(raw_copy / f"{table}.parquet"), 11, column, value)
    assert e.expected.endswith(expected) and f"row 11, column '{column}'" in str(e)


def test_missing_column(raw_copy):
    df = pd.read_parquet(raw_copy / "txs.parquet").drop(columns="selector")
    rewrite(raw_copy / "txs.parquet", df)
    e = error_of(raw_copy)
    assert (e.column, e.got) == ("selector", "missing") and "txs.parquet" in e.file


def test_wrong_type(raw_copy):
    df = pd.read_parquet(raw_copy / "accesses.parquet")
    df["step"] = df.step.astype("float64")
    rewrite(raw_copy / "accesses.parquet", df)
    e = error_of(raw_copy)
    assert (e.column, e.expected, e.got) == ("step", "type int32", "double")


def test_duplicate_step(raw_copy):
    acc = pd.read_parquet(raw_copy / "accesses.parquet")
    row = int(acc.index[(acc.step == 1)][0])
    set_cell(raw_copy, "accesses", row, "step", 0)
    e = error_of(raw_copy)
    assert (e.row, e.column, e.expected) == (row, "step", "a unique (tx_hash, step)")


def test_gap_in_steps(raw_copy):
    acc = pd.read_parquet(raw_copy / "accesses.parquet")
    row = int(acc.groupby("tx_hash").step.idxmax().iloc[3])
    set_cell(raw_copy, "accesses", row, "step", int(acc.step[row]) + 2)
    e = error_of(raw_copy)
    assert (e.row, e.column) == (row, "step") and e.expected.startswith(f"step {acc.step[row]}")


def test_access_of_missing_transaction(raw_copy):
    txs = pd.read_parquet(raw_copy / "txs.parquet")
    acc = pd.read_parquet(raw_copy / "accesses.parquet")
    gone = acc.tx_hash[0]
    rewrite(raw_copy / "txs.parquet", txs[txs.tx_hash != gone], TXS_SCHEMA)
    e = error_of(raw_copy)
    assert (e.row, e.column, e.got) == (0, "tx_hash", gone) and "accesses.parquet" in e.file


def test_split_is_time_ordered_and_whole(tiny_raw):
    seqs = to_sequences(*load_raw(tiny_raw))
    parts = split(sample(seqs, 0.8, seed=3), 0.15, 0.15)
    assert parts["train"].block.max() < parts["valid"].block.min()
    assert parts["valid"].block.max() < parts["test"].block.min()
    kept = pd.concat(parts.values())
    assert kept.tx_hash.is_unique and set(kept.tx_hash) <= set(seqs.tx_hash)
    # whole transactions: each kept transaction keeps all its accesses
    full = seqs.set_index("tx_hash").address.map(len)
    assert (kept.set_index("tx_hash").address.map(len) == full[kept.tx_hash]).all()


def test_stage_runs_and_bad_input_writes_nothing(tiny_raw, raw_copy, tmp_path):
    good = papermill("02_data.ipynb", tmp_path / "ok.ipynb", raw_dir=tiny_raw, out_dir=tmp_path / "prep",
                     profile_path=tmp_path / "profile.json", sizes_path=tmp_path / "sizes.json", frac=0.5, top_contracts=1)  # a half-size tiny test split misses some top contracts
    assert good.returncode == 0, good.stderr[-3000:]
    sizes = json.loads((tmp_path / "sizes.json").read_text())
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == ["test.parquet", "train.parquet", "valid.parquet"]
    assert 200 < sum(s["txs"] for s in sizes.values()) < 400  # half of 600
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["counts"]["txs"] == sizes["train"]["txs"] and set(profile) >= {"contracts", "selectors", "slots", "lengths", "ops"}

    set_cell(raw_copy, "accesses", 4, "op", "X")
    bad = papermill("02_data.ipynb", tmp_path / "bad.ipynb", raw_dir=raw_copy, out_dir=tmp_path / "prep2",
                    profile_path=tmp_path / "profile2.json", sizes_path=tmp_path / "sizes2.json")
    assert bad.returncode != 0 and "row 4, column 'op'" in bad.stderr + bad.stdout
    assert not any(p.name.startswith(("prep2", "profile2", "sizes2", ".prep2", ".profile2", ".sizes2")) for p in tmp_path.iterdir())
