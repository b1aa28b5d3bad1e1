"""Promotion and rollback on a real TorchServe: the default version switches while traffic flows, and no request fails."""
import threading

from mlproj.export import build_mar, request_of
from mlproj.registry import Registry, main
from mlproj.torchserve import Server, free_port, start, stop


def test_promote_and_rollback_switch_the_served_version_without_downtime(tiny_model, tmp_path, capsys):
    path, parts = tiny_model
    card = {"git_revision": "x", "data_dvc": {"md5": "m"}, "params": {}, "metrics": {}}
    mars = {v: build_mar(path, tmp_path / v, "mlproj", v, {**card, "version": v}) for v in ("1.0.0", "1.1.0")}
    reg = Registry(tmp_path / "registry")
    req = request_of(parts["test"].iloc[0].to_dict(), 1)
    srv = start(tmp_path / "run", [], port=free_port())
    try:
        reg.promote(mars["1.0.0"], srv)
        assert srv.predict(req)[1]["model"]["version"] == "1.0.0"

        seen, failures, done = [], [], threading.Event()
        def traffic():  # a client that keeps asking while versions switch
            c = Server(srv.run_dir, srv.port)
            while not done.is_set():
                status, resp = c.predict(req)
                (seen if status == 200 else failures).append(resp.get("model", {}).get("version", resp))
        t = threading.Thread(target=traffic); t.start()
        try:
            reg.promote(mars["1.1.0"], srv)  # loads 1.1.0 beside 1.0.0, then switches the default
            assert srv.predict(req)[1]["model"]["version"] == "1.1.0" and srv.versions() == {"1.0.0": False, "1.1.0": True}
            assert main(["rollback", "--registry", str(tmp_path / "registry"), "--run-dir", str(tmp_path / "run")]) == 0
            assert "production: mlproj 1.0.0" in capsys.readouterr().out
            assert srv.predict(req)[1]["model"]["version"] == "1.0.0"
        finally:
            done.set(); t.join()
        assert failures == [] and {"1.0.0", "1.1.0"} <= set(seen), (failures[:3], set(seen))
        assert reg.production() == "1.0.0" and reg.index()["history"] == ["1.0.0"]
        assert reg.card("1.1.0")["version"] == "1.1.0"  # still registered, for a later promotion
    finally:
        stop(tmp_path / "run")
