"`make lab` as a user meets it: JupyterLab started by the Makefile (as root too, no browser), its API, and one notebook run through the server's own kernel."
import json, os, re, signal, subprocess, time, urllib.error, urllib.request, uuid

import nbformat
import pytest
import websocket  # websocket-client, a dependency of jupyter_server

from mlproj.torchserve import free_port

from conftest import ROOT


def _msg(code: str) -> dict:
    "A Jupyter `execute_request` on the shell channel."
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "username": "test", "session": "test", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}}


def _run_cell(ws, code: str, timeout: float = 120) -> dict:
    "Send one cell to the kernel; return its `execute_reply` content (errors included), once the kernel is idle again."
    m = _msg(code); ws.send(json.dumps(m)); reply, idle, t0 = None, False, time.time()
    while not (reply and idle):
        assert time.time() - t0 < timeout, f"no reply to {code[:60]!r}"
        r = json.loads(ws.recv())
        if r.get("parent_header", {}).get("msg_id") != m["header"]["msg_id"]: continue
        if r["msg_type"] == "execute_reply": reply = r["content"]
        if r["msg_type"] == "status" and r["content"]["execution_state"] == "idle": idle = True
    return reply


@pytest.fixture
def lab():
    "`make lab` on a free loopback port, with the URL and token it prints; stopped (with its kernels) afterwards."
    port = free_port(1)
    p = subprocess.Popen(["make", "--no-print-directory", "SETUP=", "lab", f"LAB_PORT={port}"], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url, seen = None, []
    try:
        t0 = time.time()
        while url is None:
            line = p.stdout.readline()
            assert line or p.poll() is None, "make lab exited:\n" + "".join(seen)
            assert time.time() - t0 < 120, "no URL printed within 120 s:\n" + "".join(seen)
            seen.append(line)
            if m := re.search(rf"(http://127\.0\.0\.1:{port}/lab\?token=(\w+))", line): url = m.groups()
        yield port, url[1], "".join(seen)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(timeout=30)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()


def test_make_lab_serves_and_runs_a_notebook_in_its_kernel(lab):
    port, token, log = lab
    assert "Running as root" not in log  # as root (as in CI's container) it starts, and says nothing about it
    api = f"http://127.0.0.1:{port}/api"
    get = lambda path, **kw: json.loads(urllib.request.urlopen(urllib.request.Request(f"{api}{path}?token={token}", **kw), timeout=30).read())
    for _ in range(60):  # the URL is printed just before the server listens
        try: status = get("/status"); break
        except urllib.error.URLError: time.sleep(0.5)
    assert "started" in status
    assert any(c["name"] == "00_core.ipynb" for c in get("/contents/nbs")["content"])  # it serves the project's notebooks
    with pytest.raises(urllib.error.HTTPError) as e:  # and nothing without the token
        urllib.request.urlopen(f"{api}/contents/nbs", timeout=30)
    assert e.value.code == 403
    kernel = get("/kernels", method="POST", data=b'{"name": "python3"}', headers={"Content-Type": "application/json"})
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels?token={token}", timeout=120)
    try:
        nb = nbformat.read(ROOT / "nbs" / "00_core.ipynb", as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        for src in code:  # every code cell of 00_core, in order, in the server's kernel
            r = _run_cell(ws, src)
            assert r["status"] == "ok", f"{src[:80]!r}: {r.get('ename')}: {r.get('evalue')}"
        r = _run_cell(ws, "import mlproj, sys; assert sys.prefix.endswith('.venv'), sys.prefix")  # the project's venv, not another Python
        assert r["status"] == "ok", r
    finally: ws.close()
    assert len(code) >= 3
