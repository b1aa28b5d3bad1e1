"""A real TorchServe on loopback, serving archives built by `build_mar`: guards, auth, versions, cache, batching."""
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlproj.export import MAX_ACCESSES, build_mar, request_of
from mlproj.predict import load_mar
from mlproj.torchserve import Server, free_port, running, start, stop

ROOT = Path(__file__).resolve().parents[1]
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
    workers = len(srv.manage("GET", "/models/mlproj")[0]["workers"])
    calls = [srv.call("POST", "/predictions/mlproj", body) for _ in range(workers + 1)]
    assert all(c[0] == 200 and c[2] == calls[0][2] for c in calls)  # the same answer, from the model or the cache
    tags = [c[1]["x-cache"] for c in calls]
    # each worker keeps its own cache: the first call misses, and a worker misses at most once, so of workers + 1 calls one hits
    assert tags[0] == "miss" and "hit" in tags and tags.count("miss") <= workers, tags


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


HANDLE = r'''
import json, os, sys, zipfile
from pathlib import Path
from ts.context import Context, RequestProcessor
mar, d, body = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
os.environ["MLPROJ_REQUEST_LOG"] = str(d / "requests.jsonl")
from mlproj.handler import AccessHandler
zipfile.ZipFile(mar).extractall(d)
manifest = json.loads((d / "MAR-INF" / "MANIFEST.json").read_text())
ctx = Context(manifest["model"]["modelName"], str(d), manifest, 1, None, "0.12.0")
handler = AccessHandler(); handler.initialize(ctx)
deep = {}
for _ in range(3000): deep = {"to": deep}
rows = [{"body": body.encode()}, {"body": body}, {"body": json.loads(body)}, {"data": json.loads(body)},  # bytes, str (text/*), parsed JSON
        {"body": 1}, {"body": "1"}, {"body": [[[]]]}, {"body": b"[" * 5000 + b"]" * 5000}, {"body": deep}, {"body": b"\xff\xfe{"}]
ctx.request_processor = [RequestProcessor({}) for _ in rows]
out = handler.handle(rows, ctx)
print(json.dumps({"responses": out, "status": [p.get_response_status_code() for p in ctx.request_processor],
                  "logged": len((d / "requests.jsonl").read_text().splitlines())}))
'''


def test_handle_answers_a_body_alike_as_bytes_str_or_parsed_and_turns_away_the_rest(tiny_model, tmp_path):
    "TorchServe hands the handler bytes, a str (text/* content types) or parsed JSON (application/json, any JSON value)."
    path, parts = tiny_model
    mar = build_mar(path, tmp_path / "store", "mlproj", "1.0.0", {"note": "test"})
    body = json.dumps(request_of(parts["test"].to_dict("records")[0], 1, k=3))
    r = subprocess.run([sys.executable, "-c", HANDLE, str(mar), str(tmp_path / "unpacked"), body], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["status"] == [200] * 4 + [400] * 6, res
    assert all(a == res["responses"][0] for a in res["responses"][1:4])
    assert all(set(a) == {"error", "field"} and a["field"] == "body" for a in res["responses"][4:]), res["responses"][4:]
    assert res["logged"] == 4  # every answered body is logged, whatever form it came in


def test_fuzzed_bodies_never_get_a_5xx(served):
    "Generated bodies (hypothesis): every field set to every wrong type, nesting, sizes, encodings and content types."
    from hypothesis import HealthCheck, given, settings, strategies as st
    srv, _, test = served
    leaf = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
    anyjson = st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
    hexes = st.sampled_from([A, S, "0x", "0x12345678", "0x" + "ab" * 21, "0xZZ", "ab" * 20, "0x" + "a" * 39, ""])
    field = hexes | anyjson
    access = st.fixed_dictionaries({}, optional={"address": field, "slot": field, "extra": anyjson}) | anyjson
    request = st.fixed_dictionaries({}, optional={"to": field, "selector": field, "sender": field, "input": field, "k": anyjson | st.integers(-5, 300),
                                                  "horizon": anyjson | st.integers(-5, 300), "accesses": st.lists(access, max_size=6) | anyjson})
    deep = st.integers(1, 6000).flatmap(lambda n: st.sampled_from([b"[" * n + b"]" * n, b'{"to":' * n + b"1" + b"}" * n, b"[" * n]))
    body = (request.map(lambda r: json.dumps(r).encode()) | anyjson.map(lambda v: json.dumps(v).encode()) | deep | st.binary(max_size=300)
            | request.flatmap(lambda r: st.sampled_from(["utf-16", "utf-32", "latin-1"]).map(lambda enc: json.dumps(r, ensure_ascii=False).encode(enc, "replace")))
            | st.integers(MAX_ACCESSES, 300_000).map(lambda n: b'{"to":"' + A.encode() + b'","input":"0x' + b"00" * n + b'"}'))
    seen = []

    @settings(max_examples=250, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=body, ctype=st.sampled_from(["application/json", "text/plain", "application/octet-stream", "application/json; charset=utf-8"]))
    def check(body, ctype):
        status, _, out = srv.call("POST", "/predictions/mlproj", body, content_type=ctype)
        seen.append(status)
        assert status < 500, (status, body[:200], ctype, out[:300])
        if status == 400: assert set(json.loads(out)) == {"error", "field"}, out[:300]

    check()
    assert len(seen) >= 200 and seen.count(400) > 100, {s: seen.count(s) for s in set(seen)}
    assert srv.call("GET", "/ping")[0] == 200 and srv.predict(good(test[0]))[0] == 200  # alive, and answering


def test_registration_from_a_url_is_refused_before_any_download(served):
    "allowed_urls admits bare archive names in the model store only: the management API must not fetch an http URL (CVE-2023-43654)."
    import socket
    srv, _, _ = served
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0)); listener.listen(); listener.settimeout(0.5)
        port = listener.getsockname()[1]
        for url in (f"http://127.0.0.1:{port}/x.mar", f"https://127.0.0.1:{port}/x.mar", f"HTTP://localhost:{port}/y.mar"):
            status, _, out = srv.call("POST", f"/models?url={url}", api="management")
            assert 400 <= status < 500 and b"does not match any allowed url" in out.lower(), (url, status, out[:300])
        status, _, out = srv.call("POST", "/models?url=file:///etc/passwd", api="management")
        assert 400 <= status < 500, (status, out[:300])
        try: conn, _ = listener.accept()
        except socket.timeout: conn = None
        assert conn is None, "TorchServe connected to the URL it was asked to register"


def test_expired_keys_are_renewed_and_the_client_picks_them_up(tmp_path):
    "Keys that last 6 s: once they expire calls are refused; make serve-keys renews them; a running client reads the new ones itself."
    import time
    from mlproj.torchserve import CONFIG, main as ts_main, read_properties
    conf = {**read_properties(ROOT / CONFIG), "token_expiration_min": "0.1"}
    (tmp_path / "config.properties").write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
    run = tmp_path / "run"
    srv = start(run, port=free_port(), config=tmp_path / "config.properties")
    try:
        client = Server(run, srv.port)
        assert client.call("GET", "/models", api="management")[0] == 200
        time.sleep(7)
        status, _, out = client.call("GET", "/models", api="management")
        assert status == 400 and b"InvalidKeyException" in out  # expired: the key file holds nothing newer yet
        assert ts_main(["keys", "--run-dir", str(run)]) == 0  # make serve-keys
        assert client.call("GET", "/models", api="management")[0] == 200  # refused once, then the renewed key from the file
        assert client.call("GET", "/ping")[0] == 200
    finally:
        stop(run)


def test_a_body_over_max_request_size_gets_413(served):
    "serve/config.properties caps bodies at 1 MiB: TorchServe's Netty answers 413 and closes; the server goes on."
    from mlproj.torchserve import CONFIG, read_properties
    srv, _, test = served
    cap = int(read_properties(ROOT / CONFIG)["max_request_size"])
    for n in (cap + 1, 12 << 20):
        status, _, _ = srv.call("POST", "/predictions/mlproj", b'{"to":"0x' + b"a" * n + b'"}')
        assert status == 413, (n, status)
    assert srv.predict(good(test[0]))[0] == 200
