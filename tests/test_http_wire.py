"""The server's own HTTP/1.1 layer (``edgeskip_runtime/server/http11.py``) on the wire: raw bytes
to the real server, as broken or unusual clients send them, and the reader on a socket pair."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
from edgeskip_runtime.errors import EdgeskipError
from edgeskip_runtime.server.http11 import Connection, ProtocolError, parse_head, set_io_timeout

from edgeskip.evaluation.client import OIPClient, parse_metrics
from edgeskip.evaluation.local_server import LocalServer


@pytest.fixture(scope="module")
def server(bundles):
    with LocalServer(bundles("host").path, "--no-pin", "--idle-timeout-s", "2") as s:
        s.client = OIPClient(s.url)
        yield s


def exchange(port: int, raw: bytes, *, read_s: float = 10.0) -> bytes:
    """Send ``raw`` on a fresh connection and read until the server closes it or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_s) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def infer_body(seed: int = 0) -> bytes:
    x = np.random.default_rng(seed).integers(0, 256, (1, 32, 32))
    return json.dumps({"inputs": [{"name": "image", "shape": [1, 32, 32], "datatype": "UINT8",
                                   "data": x.ravel().tolist()}]}).encode()


def post(model: str, body: bytes, extra: str = "", version: str = "HTTP/1.1") -> bytes:
    return (f"POST /v2/models/{model}/infer {version}\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def received(client: OIPClient) -> dict[str, float]:
    m = parse_metrics(client.metrics())
    return {k: m.get(f"edgeskip_requests_total_{k}", 0.0) for k in ("processed", "dropped", "rejected")} | {
        "received": m["edgeskip_requests_received_total"]}


BROKEN = {  # raw request -> the status the server must answer before it closes
    "start line with two parts": (b"GET /v2/health/live\r\n\r\n", 400),
    "header without a colon": (b"GET /v2/health/live HTTP/1.1\r\nHost x\r\n\r\n", 400),
    "space before the colon": (b"GET /v2/health/live HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "obsolete line folding": (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n  folded\r\n\r\n", 400),
    "head over 64 KiB": (b"GET /v2/health/live HTTP/1.1\r\nX: " + b"a" * (70 << 10) + b"\r\n\r\n", 431),
    "101 header fields": (b"GET /v2/health/live HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(101))
                          + b"\r\n", 431),
    "HTTP/2.0": (b"GET /v2/health/live HTTP/2.0\r\n\r\n", 505),
    "unknown method": (b"BREW /v2/health/live HTTP/1.1\r\n\r\n", 501),
    "negative Content-Length": (b"POST /v2/repository/models/x/load HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    "Content-Length with a sign": (b"POST /v2/repository/models/x/load HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
    "conflicting Content-Length": (b"POST /v2/repository/models/x/load HTTP/1.1\r\nContent-Length: 2\r\n"
                                   b"Content-Length: 3\r\n\r\n{}", 400),
    "chunked body": (b"POST /v2/repository/models/x/load HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                     411),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_requests_get_an_answer_and_a_close(server, case: str) -> None:
    raw, status = BROKEN[case]
    answer = exchange(server.port, raw)
    assert status_of(answer) == status, answer[:200]
    assert b"Connection: close" in answer.split(b"\r\n\r\n")[0]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert server.client.get_json("/v2/health/live") == {"live": True}  # and it still serves


def test_broken_framing_on_the_infer_route_is_counted_as_rejected(server) -> None:
    before = received(server.client)
    answer = exchange(server.port, f"POST /v2/models/{server.model}/infer HTTP/1.1\r\nContent-Length: x\r\n\r\n"
                      .encode())
    assert status_of(answer) == 400
    body = infer_body()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:  # the body never comes whole
        s.sendall(post(server.model, body)[:-100])
    deadline = time.monotonic() + 10
    while received(server.client)["received"] < before["received"] + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = received(server.client)
    assert after["rejected"] == before["rejected"] + 2 and after["received"] == before["received"] + 2


def test_pipelined_requests_are_answered_in_order(server) -> None:
    raw = (post(server.model, infer_body(1)) + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
           + post(server.model, infer_body(2), "Connection: close\r\n"))
    answers = exchange(server.port, raw)
    assert answers.count(b"HTTP/1.1 200 OK") == 3
    parts = answers.split(b"HTTP/1.1 200 OK")[1:]
    assert b'"model_name"' in parts[0] and b'{"live": true}' in parts[1] and b'"model_name"' in parts[2]


def test_expect_100_continue_gets_continue_then_the_answer(server) -> None:
    body = infer_body()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(post(server.model, body, "Expect: 100-continue\r\n")[: -len(body)])
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_a_body_limit_below_one_image_request_is_refused_at_start(bundles) -> None:
    with pytest.raises(EdgeskipError, match=r"below the size of one binary image .* \(option --max-body-bytes\)"):
        LocalServer(bundles("host").path, "--no-pin", "--max-body-bytes", "1000")


def test_expect_100_continue_with_an_oversized_body_is_refused_unread(bundles) -> None:
    with LocalServer(bundles("host").path, "--no-pin", "--max-body-bytes", "3000") as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(f"POST /v2/models/{s.model}/infer HTTP/1.1\r\nContent-Length: 5000000\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        answer = sock.recv(65536)  # at once: the client never has to send the 5 MB
        assert status_of(answer) == 413 and b"Connection: close" in answer


@pytest.mark.parametrize(("version", "connection", "stays_open"),
                         [("HTTP/1.1", "", True), ("HTTP/1.1", "Connection: close\r\n", False),
                          ("HTTP/1.0", "", False), ("HTTP/1.0", "Connection: keep-alive\r\n", True)])
def test_keep_alive_follows_the_protocol_version(server, version: str, connection: str, stays_open: bool) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"GET /v2/health/live {version}\r\nHost: x\r\n{connection}\r\n".encode())
        answer = s.recv(65536)
        assert status_of(answer) == 200
        s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            again = s.recv(65536)
        except ConnectionResetError:
            again = b""
        assert again.startswith(b"HTTP/1.1 200") is stays_open


def test_a_silent_connection_is_closed_after_the_idle_timeout(server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # a head that never ends
        t0 = time.monotonic()
        answer = s.recv(65536)
        assert 1.0 < time.monotonic() - t0 < 8.0  # --idle-timeout-s 2
        assert status_of(answer) == 408 and b"Connection: close" in answer
        assert s.recv(65536) == b""  # and closed
    assert server.client.get_json("/v2/health/live") == {"live": True}


# -- the reader on a socket pair -------------------------------------------------------------------

def test_a_body_in_many_segments_is_read_whole_and_what_follows_kept() -> None:
    a, b = socket.socketpair()
    body = bytes(range(256)) * (1 << 14)  # 4 MiB
    threading.Thread(target=lambda: b.sendall(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                                              + b"GET /next HTTP/1.1\r\n\r\n"), daemon=True).start()
    conn = Connection(a)
    msg = conn.read_head()
    assert msg is not None and conn.read_body(msg.content_length() or 0) == body
    nxt = conn.read_head()
    assert nxt is not None and nxt.start == ("GET", "/next", "HTTP/1.1") and conn.pending == 0
    b.close()
    assert conn.read_head() is None  # clean end of stream


def test_a_stream_cut_inside_a_head_is_an_error_not_an_empty_message() -> None:
    a, b = socket.socketpair()
    b.sendall(b"GET / HTTP/1.1\r\nHost: x")
    b.close()
    with pytest.raises(ProtocolError) as err:
        Connection(a).read_head()
    assert err.value.status == 400


def test_header_names_are_case_insensitive_and_repeats_are_joined() -> None:
    msg = parse_head(b"GET / HTTP/1.1\r\nCONTENT-length: 5\r\nX-A: 1\r\nx-a: 2\r\ncontent-length: 5")
    assert msg.content_length() == 5 and msg.headers["x-a"] == "1, 2"


@pytest.mark.parametrize("seconds", [0.3, 1.0])
def test_kernel_side_timeout_ends_a_blocked_read(seconds: float) -> None:
    a, b = socket.socketpair()
    set_io_timeout(a, seconds)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        Connection(a).read_head()
    assert seconds * 0.8 < time.monotonic() - t0 < seconds + 1.0
    b.close()


@pytest.mark.parametrize("busy_poll_s", [0.0, 0.05])
def test_the_client_reads_answers_blocking_or_polling(server, busy_poll_s: float) -> None:
    client = OIPClient(server.url, busy_poll_s=busy_poll_s)
    big = np.zeros((64, 1, 32, 32), np.float32)  # a 300 KB JSON body: sends that fill the socket buffer
    doc = {"inputs": [{"name": "image", "shape": list(big.shape), "datatype": "FP32", "data": big.ravel().tolist()}]}
    status, _, raw = client.request("POST", f"/v2/models/{server.model}/infer", json.dumps(doc).encode())
    assert status == 200 and json.loads(raw)["outputs"][0]["shape"] == [64, 10]
    for seed in range(5):
        status, _, logits = client.infer_uint8(server.model, np.full((1, 32, 32), seed, np.uint8))
        assert status == 200 and logits is not None and logits.shape == (1, 10) and np.isfinite(logits).all()
    client.close()
