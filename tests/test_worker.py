"""A serving worker needs only the serving stack: the handler loads an archive and answers without the training code."""
import json, subprocess, sys

from mlproj.export import build_mar, request_of

# run in a fresh interpreter, so that nothing the test session imported counts
WORKER = r'''
import json, sys, zipfile
from pathlib import Path
from ts.context import Context, RequestProcessor  # TorchServe's own context and request objects
from mlproj.handler import AccessHandler
mar, d, body = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
zipfile.ZipFile(mar).extractall(d)
manifest = json.loads((d / "MAR-INF" / "MANIFEST.json").read_text())
ctx = Context(manifest["model"]["modelName"], str(d), manifest, 1, None, "0.12.0")
handler = AccessHandler(); handler.initialize(ctx)
ctx.request_processor = [RequestProcessor({}), RequestProcessor({})]
out = handler.handle([{"body": body.encode()}, {"body": b"{not json"}], ctx)
print(json.dumps({"responses": out, "status": [p.get_response_status_code() for p in ctx.request_processor],
                  "training_stack": sorted(m for m in ("fastai", "dvclive", "pandas", "matplotlib", "fastprogress", "pyarrow",
                                                       "pandera", "sklearn", "scipy", "evm", "pydantic", "mlproj.train",
                                                       "mlproj.evaluate", "mlproj.data") if m in sys.modules)}))
'''


def test_a_worker_answers_without_the_training_stack(tiny_model, tmp_path):
    path, parts = tiny_model
    mar = build_mar(path, tmp_path / "store", "mlproj", "1.0.0", {"note": "test"})
    tx = parts["test"].to_dict("records")[0]
    r = subprocess.run([sys.executable, "-c", WORKER, str(mar), str(tmp_path / "unpacked"), json.dumps(request_of(tx, 1, k=3))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["status"] == [200, 400]
    assert len(res["responses"][0]["next"]) == 3 and res["responses"][1]["field"] == "body"
    assert res["training_stack"] == [], f"a serving worker imported {res['training_stack']}"
