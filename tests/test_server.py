"""The adaptive server against real HTTP on loopback: a subprocess started and stopped by fixtures."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from edgeskip_runtime import Bundle, CompiledModel

from edgeskip.evaluation.client import OIPClient, parse_metrics
from edgeskip.evaluation.local_server import LocalServer


class Server(LocalServer):
    """The real server subprocess, with request helpers for the tests."""

    def __init__(self, bundle: Path, tmp: Path, *args: str) -> None:
        self.log = tmp / "decisions.jsonl"
        super().__init__(bundle, "--no-pin", "--decision-log", str(self.log), *args)
        self.client = OIPClient(self.url)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, doc=None) -> tuple[int, dict]:
        status, _, body = self.request(method, path, None if doc is None else json.dumps(doc).encode())
        return status, json.loads(body)

    def counts(self) -> dict[str, float]:
        m = parse_metrics(self.client.metrics())
        return {"received": m["edgeskip_requests_received_total"],
                **{k: m.get(f"edgeskip_requests_total_{k}", 0.0) for k in ("processed", "dropped", "rejected")}}


@pytest.fixture(scope="module")
def host_bundle(bundles) -> Path:
    return bundles("host").path


@pytest.fixture(scope="module")
def server(host_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    s = Server(host_bundle, tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 1, 32, 32)).astype(np.float32)


def infer_doc(x: np.ndarray, **params) -> dict:
    doc = {"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    if params:
        doc["parameters"] = params
    return doc


def test_health_metadata_and_configs(server: Server) -> None:
    assert server.json("GET", "/v2/health/live") == (200, {"live": True})
    assert server.json("GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = server.json("GET", f"/v2/models/{server.model}")
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, 1, 32, 32]
    assert meta["outputs"][0]["shape"] == [-1, 10] and meta["parameters"]["skippable_blocks"] == 6
    status, cfgs = server.json("GET", f"/v2/models/{server.model}/configs")
    assert status == 200 and cfgs["policy"] == "algorithm1" and cfgs["configs"][0]["n_skipped"] == 0


def test_inference_equals_direct_runtime(server: Server, host_bundle: Path) -> None:
    direct = CompiledModel(Bundle.open(host_bundle))
    for seed in range(3):
        x = image(seed)
        status, doc = server.json("POST", f"/v2/models/{server.model}/infer", {"id": f"q{seed}", **infer_doc(x)})
        assert status == 200 and doc["id"] == f"q{seed}"
        logits = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(doc["outputs"][0]["shape"])
        expected = direct.infer(x, doc["parameters"]["mask"])
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-6)


def test_binary_and_uint8_forms(server: Server, host_bundle: Path) -> None:
    x = image(7)
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    status, headers, body = server.request("POST", f"/v2/models/{server.model}/infer", header + x.tobytes(),
                                           {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200
    n = int(headers["Inference-Header-Content-Length"])
    meta = json.loads(body[:n])
    logits = np.frombuffer(body[n:], dtype="<f4").reshape(meta["outputs"][0]["shape"])
    direct = CompiledModel(Bundle.open(host_bundle))
    np.testing.assert_allclose(logits, direct.infer(x, meta["parameters"]["mask"]), atol=1e-6)
    # Raw pixels are normalised with the bundle's mean/std.
    pixels = np.random.default_rng(1).integers(0, 256, (1, 1, 32, 32))
    norm = Bundle.open(host_bundle).manifest.normalization
    status, doc = server.json("POST", f"/v2/models/{server.model}/infer",
                              {"inputs": [{"name": "image", "shape": [1, 1, 32, 32], "datatype": "UINT8",
                                           "data": pixels.ravel().tolist()}]})
    assert status == 200
    ref = ((pixels / 255.0 - norm["mean"][0]) / norm["std"][0]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(doc["outputs"][0]["data"]).reshape(1, 10),
                               direct.infer(ref, doc["parameters"]["mask"]), atol=1e-4)


def test_overload_drops_and_accounts_for_every_request(server: Server) -> None:
    before = server.counts()
    statuses: list[int] = []
    lock = threading.Lock()
    body = json.dumps(infer_doc(image(3))).encode()

    def sender() -> None:
        for _ in range(8):
            status, _, _ = server.request("POST", f"/v2/models/{server.model}/infer", body)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=sender) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 128 and set(statuses) <= {200, 503}
    assert statuses.count(503) > 0, "16 concurrent senders against one worker must cause drops"
    after = server.counts()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    assert delta["received"] == 128
    assert delta["processed"] == statuses.count(200) and delta["dropped"] == statuses.count(503)
    assert after["received"] == after["processed"] + after["dropped"] + after["rejected"]
    assert server.json("GET", "/v2/health/live")[0] == 200
    # Algorithm 1 reacted to the drops: the skipped-block histogram saw skipping.
    _, _, metrics = server.request("GET", "/metrics")
    assert "edgeskip_config_switches_total" in metrics.decode()


def _big_json() -> bytes:
    return b'{"inputs": [' + b" " * (9 << 20) + b"]}"


MALFORMED = [
    # (name, path, body, headers, status, message)
    ("empty body", "infer", b"", {}, 400, "empty request body"),
    ("not json", "infer", b"hello", {}, 400, "not valid JSON"),
    ("json list", "infer", b"[1, 2]", {}, 400, "must be a JSON object"),
    ("json string", "infer", b'"x"', {}, 400, "must be a JSON object"),
    ("no inputs", "infer", b"{}", {}, 400, "'inputs' must be a non-empty list"),
    ("inputs not list", "infer", b'{"inputs": 3}', {}, 400, "'inputs' must be a non-empty list"),
    ("empty inputs", "infer", b'{"inputs": []}', {}, 400, "'inputs' must be a non-empty list"),
    ("wrong input name", "infer", b'{"inputs": [{"name": "x"}]}', {}, 400, "exactly one input named 'image'"),
    ("two inputs", "infer", b'{"inputs": [{"name": "image"}, {"name": "cfg"}]}', {}, 400, "exactly one input"),
    ("bad datatype", "infer", b'{"inputs": [{"name": "image", "datatype": "INT64", "shape": [1,1,32,32]}]}', {},
     400, "datatype must be one of"),
    ("missing datatype", "infer", b'{"inputs": [{"name": "image", "shape": [1,1,32,32]}]}', {}, 400, "datatype"),
    ("shape not list", "infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": "1x1"}]}', {}, 400,
     "'shape' must be a list of integers"),
    ("shape floats", "infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1.5, 1, 32, 32]}]}',
     {}, 400, "'shape' must be a list of integers"),
    ("wrong shape", "infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 3, 32, 32]}]}', {},
     400, "image shape must be"),
    ("wrong rank", "infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [32, 32]}]}', {}, 400,
     "image shape must be"),
    ("batch zero", "infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [0, 1, 32, 32]}]}', {},
     400, "image shape must be"),
    ("batch too big", "infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [65, 1, 32, 32]}]}',
     {}, 400, "image shape must be"),
    ("no data", "infer", b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 32, 32]}]}', {}, 400,
     "has no 'data'"),
    ("short data", "infer",
     b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 32, 32], "data": [1, 2, 3]}]}', {}, 400,
     "has 3 values"),
    ("string data", "infer",
     b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 32, 32], "data": ["a"]}]}', {}, 400,
     "must be numbers"),
    ("nan", "infer", None, {}, 400, "NaN or Inf"),
    ("inf", "infer", None, {}, 400, "NaN or Inf"),
    ("uint8 out of range", "infer", None, {}, 400, "integers 0..255"),
    ("bad priority", "infer", None, {}, 400, "'priority' must be an integer"),
    ("negative priority", "infer", None, {}, 400, "'priority' must be an integer"),
    ("bad budget", "infer", None, {}, 400, "'latency_budget_ms' must be a positive number"),
    ("zero budget", "infer", None, {}, 400, "'latency_budget_ms' must be a positive number"),
    ("tensor parameters not object", "infer",
     b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 32, 32], "parameters": 7}]}', {}, 400,
     "'parameters' must be an object"),
    ("parameters not object", "infer", b'{"parameters": 3, "inputs": []}', {}, 400, "'parameters' must be"),
    ("unknown model", "/v2/models/nope/infer", b"{}", {}, 404, "unknown model 'nope'"),
    ("unknown route", "/v2/nothing", b"{}", {}, 404, "no route"),
    ("oversized body", "infer", None, {}, 413, "exceeds the limit"),
    ("binary size mismatch", "infer", None, {}, 400, "binary image must be"),
    ("binary header too long", "infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, 400,
     "does not fit"),
    ("binary header not a number", "infer", b"{}", {"Inference-Header-Content-Length": "abc"}, 400,
     "bad Inference-Header-Content-Length"),
    ("binary without size", "infer", None, {}, 400, "no 'binary_data_size'"),
]


def _fill(name: str) -> tuple[bytes, dict[str, str]]:
    base = {"name": "image", "datatype": "FP32", "shape": [1, 1, 32, 32], "data": [0.0] * 1024}
    if name in ("nan", "inf"):
        data = [0.0] * 1023 + [float("nan") if name == "nan" else float("inf")]
        return json.dumps({"inputs": [{**base, "data": data}]}).encode(), {}
    if name == "uint8 out of range":
        return json.dumps({"inputs": [{**base, "datatype": "UINT8", "data": [300] * 1024}]}).encode(), {}
    if name in ("bad priority", "negative priority"):
        prio = "high" if name == "bad priority" else -1
        return json.dumps({"parameters": {"priority": prio}, "inputs": [base]}).encode(), {}
    if name in ("bad budget", "zero budget"):
        budget = "soon" if name == "bad budget" else 0
        return json.dumps({"parameters": {"latency_budget_ms": budget}, "inputs": [base]}).encode(), {}
    if name == "oversized body":
        return _big_json(), {}
    if name == "binary size mismatch":
        header = json.dumps({"inputs": [{**{k: v for k, v in base.items() if k != "data"},
                                         "parameters": {"binary_data_size": 4096}}]}).encode()
        return header + b"\0" * 100, {"Inference-Header-Content-Length": str(len(header))}
    if name == "binary without size":
        header = json.dumps({"inputs": [base]}).encode()
        return header + b"\0" * 16, {"Inference-Header-Content-Length": str(len(header))}
    raise AssertionError(name)


@pytest.mark.parametrize(("name", "path", "body", "headers", "status", "message"), MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_clear_errors(server: Server, name: str, path: str, body: bytes | None,
                                             headers: dict[str, str], status: int, message: str) -> None:
    if body is None:
        body, headers = _fill(name)
    url = f"/v2/models/{server.model}/infer" if path == "infer" else path
    before = server.counts()
    got, _, out = server.request("POST", url, body, headers)
    assert got == status, out
    assert message in json.loads(out)["error"]
    after = server.counts()
    if url.endswith("/infer"):
        assert after["rejected"] == before.get("rejected", 0) + 1
    assert after["received"] == after["processed"] + after["dropped"] + after["rejected"]
    assert server.json("GET", "/v2/health/live")[0] == 200


def test_server_serves_normally_after_the_malformed_suite(server: Server) -> None:
    """None of the refused requests above left the engine holding the module or a connection slot."""
    before = server.counts()
    status, doc = server.json("POST", f"/v2/models/{server.model}/infer", infer_doc(image(3)))
    assert status == 200, doc
    after = server.counts()
    assert after["processed"] == before["processed"] + 1 and after["dropped"] == before.get("dropped", 0)


def test_decision_log_records_every_decision(server: Server) -> None:
    server.json("POST", f"/v2/models/{server.model}/infer", infer_doc(image(9)))
    lines = [json.loads(line) for line in server.log.read_text().splitlines()]
    processed = [r for r in lines if r["event"] == "process"]
    assert processed and {"t", "request_id", "policy", "state", "config", "n_skipped", "reason"} <= set(processed[-1])
    assert processed[-1]["policy"] == "algorithm1" and "current" in processed[-1]["state"]


def test_hot_reload_success_and_failure(host_bundle: Path, tmp_path: Path) -> None:
    good = tmp_path / "good"
    shutil.copytree(host_bundle, good)
    s = Server(good, tmp_path)
    try:
        status, doc = s.json("POST", f"/v2/repository/models/{s.model}/load", {"parameters": {"policy": "static"}})
        assert status == 200 and doc["loaded"]
        assert s.json("GET", f"/v2/models/{s.model}/configs")[1]["policy"] == "static"
        # A tampered bundle is refused and the old one keeps serving.
        bad = tmp_path / "bad"
        shutil.copytree(host_bundle, bad)
        with open(bad / "model.vmfb", "r+b") as f:
            f.seek(1000)
            f.write(b"\xff\xff\xff\xff")
        status, doc = s.json("POST", f"/v2/repository/models/{s.model}/load", {"parameters": {"bundle": str(bad)}})
        assert status == 400 and "checksum mismatch" in doc["error"] and "still serving" in doc["error"]
        assert s.json("POST", f"/v2/models/{s.model}/infer", infer_doc(image(1)))[0] == 200
        # SIGHUP reloads the serving path; break it first: the old module keeps serving.
        (good / "pareto.json").write_text("{}")
        os.kill(s.proc.pid, signal.SIGHUP)
        deadline = time.time() + 20
        line = ""
        while time.time() < deadline and "reload" not in line:
            line = s.readline()
        assert "reload failed" in line
        assert s.json("POST", f"/v2/models/{s.model}/infer", infer_doc(image(2)))[0] == 200
        shutil.rmtree(good)
        shutil.copytree(host_bundle, good)
        os.kill(s.proc.pid, signal.SIGHUP)
        line = ""
        while time.time() < deadline + 20 and "loaded" not in line:
            line = s.readline()
        assert line.startswith("loaded")
    finally:
        s.stop()
