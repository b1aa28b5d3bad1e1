"""The serving Predictor and the request contract."""
import json

import torch

import pytest

from mlproj.export import MAX_ACCESSES, Predictor, RequestError, validate_request

A, S = "0x" + "ab" * 20, "0x" + "00" * 31 + "01"
GOOD = {"to": A, "selector": "0xa9059cbb", "sender": None, "input": None, "accesses": [{"address": A, "slot": S}], "k": 3, "horizon": 2}


@pytest.fixture(scope="module")
def setup(tiny_model):
    path, parts = tiny_model
    return Predictor.load(path, name="t", version="1.2.3"), parts["test"].to_dict("records")


@pytest.mark.parametrize("change,field", [
    ({"to": None}, "to"), ({"to": 12}, "to"), ({"to": "0x" + "ab" * 19}, "to"), ({"to": "0x" + "ag" * 20}, "to"),
    ({"selector": "0x123"}, "selector"), ({"sender": "0x" + "1" * 39}, "sender"), ({"input": "0xabc"}, "input"),
    ({"k": 0}, "k"), ({"k": 65}, "k"), ({"k": 2.5}, "k"), ({"k": True}, "k"), ({"horizon": -1}, "horizon"), ({"horizon": 257}, "horizon"),
    ({"accesses": {"address": A}}, "accesses"), ({"accesses": [A]}, "accesses[0]"),
    ({"accesses": [{"address": A, "slot": "0x01"}]}, "accesses[0].slot"),
    ({"accesses": [{"address": A, "slot": S}] * (MAX_ACCESSES + 1)}, "accesses"),
])
def test_bad_requests_name_the_field(change, field):
    with pytest.raises(RequestError) as e:
        validate_request({**GOOD, **change})
    assert e.value.field == field and e.value.to_json() == {"error": str(e.value), "field": field}


def test_response_follows_the_contract(setup):
    pred, test = setup
    tx = test[0]
    req = {"to": tx["to"], "selector": tx["selector"], "sender": tx["sender"], "input": tx["input"], "k": 5, "horizon": 4,
           "accesses": [{"address": a, "slot": s} for a, s in list(zip(tx["address"], tx["slot"]))[:3]]}
    r = json.loads(json.dumps(pred(req)))
    assert set(r) == {"next", "sequence", "model"} and r["model"] == {"name": "t", "version": "1.2.3"}
    assert 1 <= len(r["next"]) <= 5 and len(r["sequence"]) == 4
    scores = [c["score"] for c in r["next"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert all(set(c) - {"derivation"} == {"address", "slot", "score"} for c in r["next"])  # scheme 4 adds the derivation


def test_unknown_contract_is_answered(setup):
    pred, _ = setup
    r = pred({**GOOD, "to": "0x" + "12" * 20, "accesses": []})
    assert len(r["next"]) >= 1 and len(r["sequence"]) == 2


def test_continuation_carries_state(setup):
    """The horizon continuation equals step-by-step prediction with the growing prefix fed back."""
    pred, test = setup
    tx = max(test, key=lambda t: len(t["address"]))
    base = {"to": tx["to"], "selector": tx["selector"], "sender": tx["sender"], "input": tx["input"], "k": 1}
    seq = pred({**base, "accesses": [], "horizon": 5})["sequence"]
    prefix = []
    for got in seq:
        top = pred({**base, "accesses": prefix, "horizon": 0})["next"][0]
        assert (got["address"], got["slot"]) == (top["address"], top["slot"])
        prefix.append({"address": got["address"], "slot": got["slot"]})


def test_onnx_and_int8_variants(tiny_model, tmp_path):
    from mlproj.export import OnnxLM, export_onnx, quantize, score_gap
    from mlproj.model import load_model
    path, parts = tiny_model
    model, tok, _ = load_model(path)
    reqs = [{"to": t["to"], "selector": t["selector"], "sender": t["sender"], "input": t["input"], "k": 8,
             "accesses": [{"address": a, "slot": s} for a, s in list(zip(t["address"], t["slot"]))[:2]]}
            for t in parts["test"].to_dict("records")[:15]]
    eager = Predictor(model, tok)
    onnx = Predictor(OnnxLM(export_onnx(model, tmp_path / "m.onnx")), tok)
    assert score_gap(eager, onnx, reqs) < 1e-4
    int8 = Predictor(quantize(model), tok)
    assert all(len(int8(r)["next"]) >= 1 for r in reqs)
    assert model.h_o.weight.dtype == torch.float32  # quantize() leaves the original alone


@pytest.mark.parametrize("runtime", ["eager", "onnx", "onnx-int8", "int8"])
def test_the_archive_runs_the_runtime_it_names(tiny_model, tmp_path, runtime):
    from mlproj.core import load_params
    from mlproj.export import build_mar
    from mlproj.predict import load_mar
    path, parts = tiny_model
    mar = build_mar(path, tmp_path, "m", "2.0.0", {}, {**load_params("serve"), "runtime": runtime})
    pred = load_mar(mar)
    kind = type(pred.model).__name__ if runtime != "int8" else type(pred.model.rnn).__module__
    assert kind == {"eager": "AccessLM", "onnx": "OnnxLM", "onnx-int8": "OnnxLM", "int8": "torch.ao.nn.quantized.dynamic.modules.rnn"}[runtime]
    assert pred.batch_invariant == (runtime in ("eager", "onnx"))
    if runtime.startswith("onnx"):  # the graph the archive carries for it: DynamicQuantizeLSTM nodes for onnx-int8 only
        import onnx, zipfile
        with zipfile.ZipFile(mar) as z: graph = onnx.load_from_string(z.read({"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}[runtime])).graph
        ops = {n.op_type for n in graph.node}
        assert ("DynamicQuantizeLSTM" in ops) == (runtime == "onnx-int8"), ops
    tx = parts["test"].iloc[0].to_dict()
    assert len(pred({"to": tx["to"], "selector": tx["selector"], "accesses": [], "k": 2})["next"]) >= 1


def test_an_unknown_runtime_is_refused(tiny_model):
    with pytest.raises(ValueError, match="runtime: expected eager, onnx, onnx-int8 or int8"):
        Predictor.load(tiny_model[0], runtime="tensorrt")
