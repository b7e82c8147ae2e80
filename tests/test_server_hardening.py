"""The server's edges, as a hostile client and an operator find them: every malformed request answered
and counted, a strict reload, graceful shutdown, bounded connections, the KServe v2 routes."""

from __future__ import annotations

import http.client
import json
import random
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeskip.evaluation.client import OIPClient, parse_metrics
from edgeskip.evaluation.local_server import LocalServer


def counts(client: OIPClient) -> dict[str, float]:
    m = parse_metrics(client.metrics())
    return {"received": m["edgeskip_requests_received_total"],
            **{k: m.get(f"edgeskip_requests_total_{k}", 0.0) for k in ("processed", "dropped", "rejected")}}


def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def valid_doc(seed: int = 0) -> dict:
    x = np.random.default_rng(seed).integers(0, 256, (1, 32, 32))
    return {"inputs": [{"name": "image", "shape": [1, 32, 32], "datatype": "UINT8", "data": x.ravel().tolist()}]}


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory: pytest.TempPathFactory):
    with LocalServer(bundles("host").path, "--no-pin") as s:
        s.client = OIPClient(s.url)
        yield s


def deep(n: int) -> str:
    return "[" * n + "]" * n


MALFORMED = {
    "outputs is a number": lambda d: {**d, "outputs": 5},
    "datatype is a list": lambda d: {"inputs": [{**d["inputs"][0], "datatype": ["FP32"]}]},
    "401-digit integer in data": lambda d: {"inputs": [{**d["inputs"][0], "data": [10**400] * 1024}]},
    "401-digit latency budget": lambda d: {**d, "parameters": {"latency_budget_ms": 10**400}},
    "FP32 values beyond range": lambda d: {"inputs": [{**d["inputs"][0], "datatype": "FP32", "data": [1e308] * 1024}]},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_request_gets_a_400_and_is_counted(server, case: str) -> None:
    before = counts(server.client)
    body = json.dumps(MALFORMED[case](valid_doc())).encode()
    status, body = post(server.port, f"/v2/models/{server.model}/infer", body)
    assert status == 400 and json.loads(body)["error"]
    after = counts(server.client)
    assert after["rejected"] == before["rejected"] + 1 and after["received"] == before["received"] + 1


@pytest.mark.parametrize("raw", [b'{"inputs": ' + b"1" * 5000 + b"}", deep(5000).encode(),
                                 b'{"id": ' + deep(5000).encode() + b"}"],
                         ids=["5000 digits", "nested list", "nested id"])
def test_pathological_json_is_refused_not_crashed(server, raw: bytes) -> None:
    before = counts(server.client)
    status, body = post(server.port, f"/v2/models/{server.model}/infer", raw)
    assert status == 400 and b"error" in body
    assert counts(server.client)["rejected"] == before["rejected"] + 1


@pytest.mark.parametrize("body", [b'{"path": "/tmp/x"}', b'{"policy": "static"}', b'["static"]',
                                  b'{"parameters": {"bundle": "/tmp/x", "polcy": "static"}}',
                                  b'{"parameters": {"settings": [1]}}'])
def test_reload_refuses_what_it_would_ignore(server, body: bytes) -> None:
    status, raw = post(server.port, f"/v2/repository/models/{server.model}/load", body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert "the form is" in error or "must be" in error  # says what it accepts
    assert server.client.get_json(f"/v2/models/{server.model}/configs")["policy"] == "algorithm1"


def test_kserve_v2_model_ready_and_versioned_routes(server) -> None:
    c = server.client
    assert c.get_json(f"/v2/models/{server.model}/ready") == {"name": server.model, "ready": True}
    assert c.get_json(f"/v2/models/{server.model}/versions/1")["name"] == server.model
    assert c.get_json(f"/v2/models/{server.model}/versions/1/ready")["ready"] is True
    status, _ = post(server.port, f"/v2/models/{server.model}/versions/1/infer", json.dumps(valid_doc()).encode())
    assert status == 200
    status, _ = post(server.port, f"/v2/models/{server.model}/versions/7/infer", json.dumps(valid_doc()).encode())
    assert status == 404


JSON_VALUES = [None, True, 0, -1, 7, 10**25, 1.5, -0.0, 1e308, "", "FP32", "image", [], [1], [[1]], {}, {"a": 1},
               [1, 32, 32], [1, 1, 32, 32], "x" * 300]


def mutate(doc, rng: random.Random):
    """A copy of ``doc`` with one value somewhere replaced by a value of another type, or a key removed."""
    doc = json.loads(json.dumps(doc))
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and rng.random() < 0.75:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        node = node[key]
    if not path:
        return rng.choice(JSON_VALUES)
    parent, key = path[-1]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[key]
    else:
        parent[key] = rng.choice(JSON_VALUES)
    return doc


def test_fuzzed_requests_are_all_answered_and_counted(server) -> None:
    rng = random.Random(0)
    base = valid_doc()
    base["parameters"] = {"priority": 1, "latency_budget_ms": 50.0}
    base["outputs"] = [{"name": "logits", "parameters": {"binary_data": True}}]
    pixels = bytes(1024)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    statuses: dict[int, int] = {}
    try:
        for i in range(320):
            form = i % 4
            headers = {}
            if form == 0:  # JSON tensors, one value mutated
                body = json.dumps(mutate(base, rng)).encode()
            elif form == 1:  # binary tensors, the header mutated
                header = {"inputs": [{"name": "image", "shape": [1, 32, 32], "datatype": "UINT8",
                                      "parameters": {"binary_data_size": 1024}}]}
                head = json.dumps(mutate(header, rng)).encode()
                body = head + pixels
                headers["Inference-Header-Content-Length"] = str(len(head))
            elif form == 2:  # a wrong binary header length
                head = json.dumps({"inputs": [{"name": "image", "shape": [1, 32, 32], "datatype": "UINT8",
                                               "parameters": {"binary_data_size": 1024}}]}).encode()
                body = head + pixels
                headers["Inference-Header-Content-Length"] = rng.choice(["-1", "0", "x", str(len(body) + 1),
                                                                        str(len(head) - 1), "1" * 40])
            else:  # bytes that are not JSON at all, or not UTF-8
                body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
            before = counts(server.client)
            conn.request("POST", f"/v2/models/{server.model}/infer", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            assert r.status in (200, 400, 404), f"request {i} answered {r.status}"
            after = counts(server.client)
            assert after["received"] == before["received"] + 1
            assert after["received"] == after["processed"] + after["dropped"] + after["rejected"]
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    finally:
        conn.close()
    assert statuses.get(400, 0) > 100 and statuses.get(200, 0) > 5  # the fuzz reached both outcomes


def test_sigterm_under_load_loses_no_admitted_request(bundles, tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    server = LocalServer(bundles("host").path, "--no-pin", "--decision-log", str(log))
    outcome: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int, keep_alive: bool) -> None:
        conn = None
        for n in range(10_000):
            if stop.is_set():
                break
            rid = f"c{k}-{n}"
            try:
                if conn is None or not keep_alive:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                conn.request("POST", f"/v2/models/{server.model}/infer",
                             body=json.dumps({"id": rid, **valid_doc(n)}).encode())
                r = conn.getresponse()
                body = r.read()
                result = str(r.status) if r.status != 200 or json.loads(body)["id"] == rid else "mismatch"
            except (OSError, http.client.HTTPException) as e:
                result = f"error {type(e).__name__}"
                conn = None
            with lock:
                outcome[rid] = result
            if result.startswith("error"):
                break

    threads = [threading.Thread(target=client, args=(k, k % 2 == 0)) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    server.proc.send_signal(signal.SIGTERM)
    rc = server.proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    output = server.proc.stdout.read()
    assert rc == 0 and "leaked" not in output and "drained" in output
    events = [json.loads(line) for line in log.read_text().splitlines()]
    admitted = {e["request_id"] for e in events if e["event"] == "process"}
    done = {e["request_id"] for e in events if e["event"] == "done"}
    assert len(admitted) > 20 and admitted == done  # the decision log is complete
    lost = [rid for rid in admitted if outcome.get(rid) != "200"]
    assert not lost, f"admitted but not answered: {lost[:5]} -> {[outcome.get(r) for r in lost[:5]]}"


def test_idle_connections_are_bounded_and_valid_requests_still_answered(bundles) -> None:
    with LocalServer(bundles("host").path, "--no-pin", "--max-connections", "32") as server:
        idle = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            idle.append(s)
        time.sleep(1.0)
        threads = int(next(line.split()[1] for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()
                           if line.startswith("Threads:")))
        assert threads <= 32 + 16  # the connection limit plus the server's own few threads
        status, _ = post(server.port, f"/v2/models/{server.model}/infer", json.dumps(valid_doc()).encode())
        assert status == 200
        for s in idle:
            s.close()


def proc_usage(pid: int) -> tuple[int, int, float]:
    """Threads, open file descriptors and resident MB of a process."""
    status = {line.split(":")[0]: line.split(":")[1].strip()
              for line in Path(f"/proc/{pid}/status").read_text().splitlines()}
    return int(status["Threads"]), len(list(Path(f"/proc/{pid}/fd").iterdir())), int(status["VmRSS"].split()[0]) / 1024


def test_two_hundred_reloads_leak_no_threads_descriptors_or_memory(bundles) -> None:
    with LocalServer(bundles("host").path, "--no-pin") as server:
        client = OIPClient(server.url)
        for _ in range(20):  # warm-up: the allocator's and the arena's steady state
            client.load(server.model, {})
        threads, fds, rss = proc_usage(server.proc.pid)
        for i in range(200):
            client.load(server.model, {"policy": "static" if i % 2 else "algorithm1"})
        assert client.infer_uint8(server.model, np.zeros((1, 32, 32), np.uint8))[0] == 200
        threads2, fds2, rss2 = proc_usage(server.proc.pid)
    assert (threads2, fds2) == (threads, fds)
    assert rss2 - rss <= 20, f"RSS grew {rss2 - rss:.1f} MB over 200 reloads"


def test_a_standard_kserve_v2_client_works(server, bundles) -> None:
    """tritonclient, as a user of the KServe v2 protocol would call the server: health, readiness,
    metadata, JSON and binary tensors, and an error read back as a client error."""
    httpclient = pytest.importorskip("tritonclient.http")
    from edgeskip_runtime import Bundle, CompiledModel
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(server.model)
    meta = client.get_model_metadata(server.model)
    assert meta["inputs"][0]["name"] == "image" and meta["outputs"][0]["name"] == "logits"
    x = np.random.default_rng(3).standard_normal((1, 1, 32, 32)).astype(np.float32)
    direct = CompiledModel(Bundle.open(bundles("host").path))
    for binary in (False, True):
        image = httpclient.InferInput("image", list(x.shape), "FP32")
        image.set_data_from_numpy(x, binary_data=binary)
        result = client.infer(server.model, [image], outputs=[httpclient.InferRequestedOutput("logits",
                                                                                             binary_data=binary)])
        mask = result.get_response()["parameters"]["mask"]
        np.testing.assert_allclose(result.as_numpy("logits"), direct.infer(x, mask), atol=1e-5)
    wrong = httpclient.InferInput("image", [1, 1, 31, 32], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 1, 31, 32), np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer(server.model, [wrong])
    assert err.value.status() == "400" and "shape" in err.value.message()
