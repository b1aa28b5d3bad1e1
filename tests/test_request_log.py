"Two serving workers share one request log: concurrent writers through many rotations lose and repeat no line."
import json, subprocess, sys
from pathlib import Path

WRITER = """
import sys
from mlproj.handler import RequestLog
log = RequestLog(sys.argv[1], max_bytes=20_000, backups=200)
for i in range(int(sys.argv[3])):
    log.write({"to": "0x" + "ab" * 20, "writer": sys.argv[2], "i": i}, {"model": {"version": "1"}, "next": []})
assert log.lost == 0, log.lost
"""


def test_two_processes_share_one_rotating_log(tmp_path):
    path, n = tmp_path / "logs" / "requests.jsonl", 3000
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), w, str(n)]) for w in ("a", "b")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    files = sorted(path.parent.glob("requests.jsonl*"))
    assert len(files) > 10, files  # it rotated many times while both wrote
    seen = [(e["request"]["writer"], e["request"]["i"]) for f in files for e in map(json.loads, f.read_text().splitlines())]
    assert sorted(seen) == sorted((w, i) for w in ("a", "b") for i in range(n))  # every line once: none lost, none doubled
    from mlproj.monitor import read_log
    entries, bad = read_log(path, window=10 * n)
    assert len(entries) == 2 * n and bad == 0  # the monitor reads them all, oldest file first
