"""The model and its predictor: nothing carries over between transactions; training is reproducible."""
import json

import pandas as pd
import pytest
import torch

from mlproj.core import set_seed
from mlproj.data import load_raw, split, to_sequences
from mlproj.model import AccessLM, LMPredictor, Markov, accesses_of, baselines
from mlproj.tokenize import Scheme, Tokenizer, write_tokens
from mlproj.model import load_model
from mlproj.train import train


@pytest.fixture(scope="module")
def trained(parts, tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    tok = Tokenizer.fit(parts["train"], Scheme(3, 4, ("to", "selector", "sender", "args")), min_freq=1)
    write_tokens(parts, tok, {}, d / "tokens", d / "stats.json")
    runs = [train(d / "tokens", d / f"m{i}.pth", d / f"live{i}", n_hidden=32, epochs=2, bs=16, seed=7) for i in range(2)]
    return d, runs


def test_training_is_reproducible(trained):
    d, (a, b) = trained
    for key in ("valid_loss", "token_accuracy", "best_epoch", "parameters"):
        assert a[key] == pytest.approx(b[key], rel=1e-6), key
    sa, sb = torch.load(d / "m0.pth")["state_dict"], torch.load(d / "m1.pth")["state_dict"]
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
def test_prediction_depends_only_on_its_own_transaction(parts, kind):
    tok = Tokenizer.fit(parts["train"], Scheme(kind, 4, ("to", "selector", "sender")), min_freq=1)
    set_seed(0)
    lm = LMPredictor(AccessLM(len(tok.vocab), 24, 2), tok)
    test = parts["test"].to_dict("records")
    target = test[3]
    alone = lm.rank_scored([target], k=5)[0]
    # the same transaction after others in one batch, and after a different neighbour: the same candidates and scores
    for batch in (test[:4], [test[0], test[5], target], [target, test[7]]):
        got = lm.rank_scored(batch, k=5)[batch.index(target)]
        assert [[e[1:] for e in c] for c in got] == [[e[1:] for e in c] for c in alone]
        assert all(abs(e1[0] - e2[0]) < 1e-4 for c1, c2 in zip(got, alone) for e1, e2 in zip(c1, c2))
    assert lm.prefetch([target]) == [lm.prefetch(test[:4])[3]]


def test_prefix_changes_only_later_positions(trained, parts):
    d, _ = trained
    model, tok, _ = load_model(d / "m0.pth")
    lm = LMPredictor(model, tok)
    tx = max(parts["test"].to_dict("records"), key=lambda t: len(t["address"]))
    other = {**tx, "address": list(tx["address"]), "slot": list(tx["slot"])}
    other["slot"][-1] = "0x" + "ee" * 32  # change the last access only
    a, b = lm.rank_scored([tx], 4)[0], lm.rank_scored([other], 4)[0]
    assert a == b  # position i never sees access i or later


def test_baselines_answer_every_position(parts):
    train, test = parts["train"].to_dict("records"), parts["test"].to_dict("records")
    for p in baselines(train):
        ranked, pre = p.rank(test, 8), p.prefetch(test)
        assert [len(r) for r in ranked] == [len(t["address"]) for t in test]
        assert all(len(x) <= len(t["address"]) for x, t in zip(pre, test))  # at most as many as the transaction made
        assert all(len(c) <= 8 for r in ranked for c in r)
