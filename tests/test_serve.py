"""A real TorchServe on loopback, serving archives built by `build_mar`: guards, auth, versions, cache, batching."""
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlproj.export import MAX_ACCESSES, build_mar, request_of
from mlproj.predict import load_mar
from mlproj.torchserve import free_port, running, start, stop

A, S = "0x" + "ab" * 20, "0x" + "00" * 32


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    "One server with two versions of the tiny model (1.0.0 the default); stopped, with all its processes, at the end."
    path, parts = tiny_model
    d = tmp_path_factory.mktemp("serve")
    mars = [build_mar(path, d / v, "mlproj", v, {"note": "test"}) for v in ("1.0.0", "1.1.0")]
    srv = start(d / "run", mars, port=free_port())
    yield srv, load_mar(mars[0]), parts["test"].to_dict("records")
    pgid = int((d / "run/server.pid").read_text().split()[0])
    assert stop(d / "run") and running(d / "run") is None
    assert subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).stdout == b"", "a TorchServe process outlived stop()"


def good(tx, n=2, **kw):
    return request_of(tx, n, **{"k": 4, **kw})


BAD = [  # (body, field) for raw request bodies
    (b"", "body"), (b"{not json", "body"), (b"[1, 2]", "body"), (b'"text"', "body"),
    (json.dumps({"to": 5}).encode(), "to"),
    (json.dumps({"to": "0x" + "ab" * 19}).encode(), "to"),
    (json.dumps({"to": "0x" + "zz" * 20}).encode(), "to"),
    (json.dumps({"to": A, "selector": "0x1234"}).encode(), "selector"),
    (json.dumps({"to": A, "k": 0}).encode(), "k"), (json.dumps({"to": A, "k": 65}).encode(), "k"),
    (json.dumps({"to": A, "k": "8"}).encode(), "k"), (json.dumps({"to": A, "horizon": 257}).encode(), "horizon"),
    (json.dumps({"to": A, "accesses": [{"address": A, "slot": "0x01"}]}).encode(), "accesses[0].slot"),
    (json.dumps({"to": A, "accesses": [{"address": A, "slot": S}] * (MAX_ACCESSES + 1)}).encode(), "accesses"),
    (json.dumps({"to": A, "input": "0x" + "00" * 500_000}).encode(), "body"),  # a 1 MB body
    (b" " * (1 << 20), "body"),
]


@pytest.mark.parametrize("body,field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_bad_request_gets_400_and_the_next_good_one_succeeds(served, body, field):
    srv, _, test = served
    status, resp = srv.predict(body)
    assert status == 400 and set(resp) == {"error", "field"} and resp["field"] == field, (status, resp)
    status, resp = srv.predict(good(test[0]))
    assert status == 200 and len(resp["next"]) >= 1, (status, resp)


def test_a_form_body_is_refused_with_a_clear_error(served):
    srv, _, test = served
    status, _, out = srv.call("POST", "/predictions/mlproj", b"to=0xab", content_type="application/x-www-form-urlencoded")
    assert status == 400 and "application/json" in json.loads(out)["error"]
    assert srv.predict(good(test[0]))[0] == 200


def test_served_answers_equal_the_batch_cli_on_the_same_archive(served):
    srv, pred, test = served
    for tx in test[:5]:
        req = good(tx, len(tx["address"]) // 2, horizon=3)
        status, resp = srv.predict(req)
        assert status == 200 and resp == json.loads(json.dumps(pred(req)))


def test_unknown_contract_is_answered(served):
    srv, _, _ = served
    status, resp = srv.predict({"to": "0x" + "42" * 20, "selector": "0xdeadbeef", "accesses": [], "k": 3, "horizon": 2})
    assert status == 200 and 1 <= len(resp["next"]) <= 3 and len(resp["sequence"]) == 2


def test_token_auth_refuses_a_call_without_the_key(served):
    srv, _, test = served
    status, resp = srv.predict(good(test[0]), key=False)
    assert status in (400, 401, 403) and "next" not in resp
    assert srv.call("GET", "/models", api="management", key=False)[0] in (400, 401, 403)
    assert srv.predict(good(test[0]))[0] == 200


def test_a_batch_mixing_bad_and_good_requests(served):
    "Concurrent calls, batched by TorchServe: each request gets its own status and answer."
    srv, _, test = served
    bodies = [json.dumps(good(t)).encode() if i % 3 else b"{broken" for i, t in enumerate(test[:24])]

    def call(b):  # one client per thread: a kept-alive connection is not shared
        from mlproj.torchserve import Server
        return Server(srv.run_dir, srv.port).predict(b)

    with ThreadPoolExecutor(8) as ex: out = list(ex.map(call, bodies))
    assert [s for s, _ in out] == [200 if i % 3 else 400 for i in range(len(bodies))]
    assert all(("next" in r) == (s == 200) for s, r in out)


def test_two_versions_and_switching_the_default(served):
    srv, _, test = served
    req = good(test[1])
    assert srv.versions() == {"1.0.0": True, "1.1.0": False}
    assert srv.predict(req)[1]["model"]["version"] == "1.0.0"
    srv.set_default("mlproj", "1.1.0")
    try:
        assert srv.versions() == {"1.0.0": False, "1.1.0": True}
        assert srv.predict(req)[1]["model"]["version"] == "1.1.0"
        assert srv.predict(req, version="1.0.0")[1]["model"]["version"] == "1.0.0"  # the old one still answers
    finally:
        srv.set_default("mlproj", "1.0.0")
    assert srv.predict(req)[1]["model"]["version"] == "1.0.0"


def test_identical_requests_come_from_the_cache(served):
    srv, _, test = served
    body = json.dumps(good(test[2], 3, k=5)).encode()
    first = srv.call("POST", "/predictions/mlproj", body)
    again = srv.call("POST", "/predictions/mlproj", body)
    assert first[0] == again[0] == 200 and first[2] == again[2]
    assert (first[1]["x-cache"], again[1]["x-cache"]) == ("miss", "hit")


def test_the_cache_can_be_switched_off(tiny_model, tmp_path):
    path, parts = tiny_model
    mar = build_mar(path, tmp_path, "mlproj", "1.0.0", {})
    srv = start(tmp_path / "run", [mar], port=free_port(), env={"MLPROJ_CACHE_SIZE": "0"})
    try:
        body = json.dumps(good(parts["test"].iloc[0].to_dict())).encode()
        assert [srv.call("POST", "/predictions/mlproj", body)[1]["x-cache"] for _ in range(2)] == ["off", "off"]
    finally:
        assert stop(tmp_path / "run")


def test_answered_requests_are_logged(served):
    srv, _, test = served
    req = good(test[3], 2, k=3)
    assert srv.predict(req)[0] == 200 and srv.predict(b"{broken")[0] == 400
    lines = [json.loads(l) for l in (srv.run_dir / "logs" / "requests.jsonl").read_text().splitlines()]
    assert lines[-1]["request"] == req and len(lines[-1]["next"]) == 3 and lines[-1]["model"]["name"] == "mlproj"
    assert all("error" not in l for l in lines)  # bad requests are not logged as traffic
