"""Monitoring with real traffic: collector runs (py-evm) turned into requests, answered by a real TorchServe, logged by
the handler, then compared with the training profile; and shadow evaluation over that log."""
import json

import pytest

from mlproj.collect import TINY, collect
from mlproj.core import load_params
from mlproj.data import load_raw, profile, to_sequences
from mlproj.export import build_mar, request_of
from mlproj.monitor import low_confidence_share, main, read_log, shadow, truths
from mlproj.handler import log_entry
from mlproj.predict import load_mar
from mlproj.export import validate_request
from mlproj.torchserve import free_port, start, stop

SHIFT = {"tokens": 6, "mix": {"transfer": 2, "approve": 1, "transfer_from": 1, "swap": 30, "swap_multihop": 20, "add_liquidity": 15,
                              "remove_liquidity": 10, "weth_deposit": 1, "weth_withdraw": 1, "nft_mint": 1, "nft_transfer": 1}}


@pytest.fixture(scope="module")
def archive(tiny_model, tmp_path_factory):
    "The tiny model as the export stage packs it: training profile, and the low-confidence share of its test requests."
    path, parts = tiny_model
    d = tmp_path_factory.mktemp("monitor")
    (d / "profile.json").write_text(json.dumps(profile(parts["train"])))
    pred = load_mar(build_mar(path, d / "plain", "mlproj", "1.0.0", {}))
    reqs = [request_of(tx, n) for tx in parts["test"].to_dict("records") for n in range(len(tx["address"]))]
    ref = low_confidence_share([log_entry(r, pred(r)) for r in reqs], load_params("monitor")["low_score"])
    card = {"version": "1.0.0", "reference": {"low_confidence_share": ref}}
    return build_mar(path, d, "mlproj", "1.0.0", card, profile_path=d / "profile.json")


def traffic(mar, run_dir, raw, n_txs=120, then=None):
    "Ask a real TorchServe about every prefix of each collected transaction (then call `then` while it still runs); return the request log and the transactions."
    txs = to_sequences(*load_raw(raw)).to_dict("records")[:n_txs]
    srv = start(run_dir, [mar], port=free_port())
    try:
        for tx in txs:
            for n in range(len(tx["address"]) + 1):
                assert srv.predict(request_of(tx, n))[0] == 200
        if then: then()
    finally:
        stop(run_dir)
    return run_dir / "logs" / "requests.jsonl", txs


def run_monitor(log, mar, out, *args):
    code = main(["drift", "--log", str(log), "--out", str(out), *(["--mar", str(mar)] if mar else []), *args])
    return code, json.loads((out / "report.json").read_text())


def test_new_seed_same_workload_raises_no_alert(archive, tmp_path):
    "The plainest flow: serve an archive with nothing promoted, send traffic, monitor (and shadow) without naming the archive."
    collect(tmp_path / "raw", {**load_params("collect"), **TINY}, seed=7, txs=200, progress=False)
    run, reg, seen = tmp_path / "run", tmp_path / "registry", {}
    def monitor_while_served():
        seen["drift"] = run_monitor(run / "logs" / "requests.jsonl", None, tmp_path / "report", "--run-dir", str(run), "--registry", str(reg))
        seen["shadow"] = main(["shadow", "--log", str(run / "logs" / "requests.jsonl"), "--run-dir", str(run), "--registry", str(reg),
                               "--candidate", str(archive), "--out", str(tmp_path / "report")])
    log, _ = traffic(archive, run, tmp_path / "raw", then=monitor_while_served)
    code, rep = seen["drift"]
    assert rep["archive"] == str(run / "store" / "mlproj-1.0.0.mar")  # the running TorchServe's own copy
    assert code == 0 and not rep["alert"], rep["checks"]
    assert rep["requests"] > 1000 and (tmp_path / "report" / "drift.png").stat().st_size > 10_000
    assert rep["transactions"] == 120 and rep["transactions_counted_by"] == "first requests"
    sh = json.loads((tmp_path / "report" / "shadow.json").read_text())
    assert seen["shadow"] == 0 and sh["production"] == rep["archive"] and sh["top1_agreement"] == 1.0

    # the same traffic without the optional sender and input: contracts and selectors are still counted per
    # transaction, so they do not drift; the missing fields are an alert of their own
    bare = tmp_path / "bare" / "requests.jsonl"; bare.parent.mkdir()
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    for e in lines: e["request"].pop("sender"); e["request"].pop("input")
    bare.write_text("".join(json.dumps(e) + "\n" for e in lines))
    code2, rep2 = run_monitor(bare, archive, tmp_path / "report2")
    assert code2 == 1 and rep2["checks"]["missing_fields_share"]["value"] == 1.0 and rep2["missing_fields"] == {"sender": len(lines), "input": len(lines)}
    for k in ("contracts_js", "selectors_js"):
        assert not rep2["checks"][k]["alert"] and abs(rep2["checks"][k]["value"] - rep["checks"][k]["value"]) < 1e-9, (k, rep2["checks"][k], rep["checks"][k])


def test_a_shifted_workload_raises_an_alert(archive, tmp_path):
    "New tokens and pools deployed, and mostly swaps and liquidity instead of transfers."
    collect(tmp_path / "raw", {**load_params("collect"), **TINY, **SHIFT}, seed=8, txs=200, progress=False)
    log, _ = traffic(archive, tmp_path / "run", tmp_path / "raw")
    code, rep = run_monitor(log, archive, tmp_path / "report")
    assert code == 1 and rep["alert"]
    # scheme 4 names the new pools by their role (`a:c1`), not their address, so few request tokens are unknown:
    # what shows the shift is where the traffic goes
    assert rep["checks"]["selectors_js"]["alert"] and rep["checks"]["contracts_js"]["alert"], rep["checks"]


def test_shadow_evaluation_over_the_log(archive, tiny_model, tmp_path):
    collect(tmp_path / "raw", {**load_params("collect"), **TINY}, seed=9, txs=60, progress=False)
    log, txs = traffic(archive, tmp_path / "run", tmp_path / "raw", n_txs=40)
    entries, bad = read_log(log)
    assert bad == 0 and len(entries) == sum(len(t["address"]) + 1 for t in txs)
    # the log's own truth is each transaction's real next access
    reqs = [validate_request(e["request"]) for e in entries]
    expected = [(tx["address"][n], tx["slot"][n]) if n < len(tx["address"]) else None for tx in txs for n in range(len(tx["address"]) + 1)]
    assert truths(reqs) == expected

    prod = load_mar(archive)
    same = shadow(prod, prod, entries)
    assert same["top1_agreement"] == 1.0 and same["candidate_acc@1"] == same["production_acc@1"]
    assert same["with_truth"] == sum(len(t["address"]) for t in txs)
    right = sum([(c["address"], c["slot"]) for c in prod({**e["request"], "k": 8})["next"]][:1] == [t]  # the beam shadow searches
                for e, t in zip(entries, expected) if t is not None)
    assert same["production_acc@1"] == pytest.approx(right / same["with_truth"])

    # transactions logged only by their first, empty request (a plain transfer asks once): no truth, no crash
    head = lambda tx: (tx["to"], tx["selector"], tx["sender"], tx["input"])
    others = [tx for tx in to_sequences(*load_raw(tmp_path / "raw")).to_dict("records")[40:] if head(tx) not in {head(t) for t in txs}][:10]
    alone = shadow(prod, prod, entries + [{"request": request_of(tx, 0)} for tx in others])
    assert len(others) == 10 and alone["requests"] == len(entries) + 10 and alone["with_truth"] == same["with_truth"]

    path, _ = tiny_model
    int8 = load_mar(build_mar(path, tmp_path / "int8", "mlproj", "1.0.1", {}, {**load_params("serve"), "runtime": "int8"}))
    other = shadow(int8, prod, entries)
    assert 0.5 < other["top1_agreement"] <= 1.0 and other["with_truth"] == same["with_truth"]


def test_truths_of_a_transaction_that_made_no_access():
    "A plain transfer's only request has an empty prefix; shadow evaluation must not crash on it (found by make retrain)."
    from mlproj.monitor import truths
    req = lambda acc: {"to": "0x" + "1" * 40, "selector": "", "sender": "0x" + "2" * 40, "input": "0x", "accesses": acc}
    assert truths([req([])]) == [None]
    assert truths([req([]), req([("0x" + "3" * 40, "0x" + "0" * 64)])]) == [("0x" + "3" * 40, "0x" + "0" * 64), None]
