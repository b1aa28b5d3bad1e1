"""Tokenization: the round trip as a property, and the stage's outputs."""
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from mlproj.data import load_raw, split, to_sequences
from mlproj.tokenize import UNK, Scheme, Tokenizer, address_args, scheme_stats

hexs = lambda n: st.text("0123456789abcdef", min_size=n, max_size=n).map(lambda s: "0x" + s)
# a few contracts and slots, small and hashed-looking, so that accesses repeat as in real traces
addresses = st.lists(hexs(40), min_size=1, max_size=4, unique=True)
slots = st.lists(st.one_of(st.integers(0, 2**16).map(lambda i: "0x" + format(i, "064x")), hexs(64)), min_size=1, max_size=6, unique=True)


@st.composite
def transactions(draw):
    addrs, slts = draw(addresses), draw(slots)
    n = draw(st.integers(0, 30))
    pick = st.tuples(st.sampled_from(addrs), st.sampled_from(slts))
    acc = draw(st.lists(pick, min_size=n, max_size=n))
    words = draw(st.lists(st.one_of(hexs(40).map(lambda a: "0" * 24 + a[2:]), hexs(64)), max_size=6))
    return {"to": draw(st.sampled_from(addrs)), "selector": draw(st.one_of(st.just(""), hexs(8))), "sender": draw(hexs(40)),
            "input": "0x12345678" + "".join(words), "address": [a for a, _ in acc], "slot": [s for _, s in acc]}


@settings(max_examples=300, deadline=None)
@given(tx=transactions(), kind=st.sampled_from([1, 2, 3]), suffix=st.integers(1, 63), extra=st.sampled_from([(), ("sender",), ("sender", "args")]))
def test_decode_encode_roundtrip(tx, kind, suffix, extra):
    scheme = Scheme(kind, suffix, ("to", "selector", *extra))
    tok = Tokenizer.fit(pd.DataFrame([tx]), scheme, min_freq=1)  # everything in vocabulary
    ids = tok.encode(tx)
    assert 1 not in ids  # no xxunk
    got = tok.decode(ids)
    assert got["accesses"] == list(zip(tx["address"], tx["slot"]))
    assert (got["to"], got["selector"]) == (tx["to"], tx["selector"])
    assert got.get("sender", tx["sender"]) == tx["sender"]
    assert got.get("args", []) == (address_args(tx["input"]) if "args" in extra else [])


def test_unknown_tokens_become_unk():
    train = {"to": "0x" + "1" * 40, "selector": "0x12345678", "sender": "", "input": "0x", "address": ["0x" + "1" * 40], "slot": ["0x" + "0" * 64]}
    tok = Tokenizer.fit(pd.DataFrame([train]), Scheme(1), min_freq=1)
    new = {**train, "to": "0x" + "2" * 40, "address": ["0x" + "2" * 40]}
    assert tok.vocab.decode(tok.encode(new))[1] == UNK


def test_scheme_stats_on_real_traces(tiny_raw):
    parts = split(to_sequences(*load_raw(tiny_raw)), 0.2, 0.2)
    s = {k: scheme_stats(parts, Scheme(k), min_freq=2) for k in (1, 2, 3)}
    assert s[1]["tokens_per_access"] == 1 and s[2]["tokens_per_access"] == 2 and 1 < s[3]["tokens_per_access"] < 2
    # scheme 2 names each slot once whatever its contract: never more unknown slots than whole pairs
    assert s[2]["oov_test"] <= s[1]["oov_test"]
    assert all(v["vocab_size"] > 4 for v in s.values())
    assert all(0 <= v[f"oov_{x}"] <= 1 for v in s.values() for x in ("valid", "test"))


def test_bad_scheme_is_refused():
    with pytest.raises(ValueError, match="tokenize.header: unknown fields"):
        Scheme(2, 4, ("to", "calldata"))


def test_address_args_skip_amounts():
    recipient = "ab" * 20
    data = "0xa9059cbb" + "0" * 24 + recipient + format(10**24, "064x") + "f" * 64
    assert address_args(data) == ["0x" + recipient]
