"""HTTP front end of the server: Open Inference Protocol routes, metrics and hot reload.

Routes (``/versions/{v}`` may follow ``/v2/models/{name}`` in the model routes, as the
KServe v2 spec allows; this server has one version, ``1``):

* ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}/ready``
* ``GET /v2/models/{name}``: metadata (inputs, outputs, platform)
* ``POST /v2/models/{name}/infer``: JSON or binary tensors; 200, or 503 when dropped
* ``GET /v2/models/{name}/configs``: the Pareto configurations, the current one, the policy,
  its settings, Δreq and the measured service time
* ``POST /v2/repository/models/{name}/load``: hot reload, body
  ``{"parameters": {"bundle": PATH, "policy": NAME, "settings": {FIELD: VALUE}}}`` (all
  optional; ``settings`` override single fields of the server's configured settings); the
  answer says what is now loaded
* ``GET /metrics``: Prometheus text format

Plain stdlib (``socketserver`` and the small HTTP/1.1 reader of ``http11.py``), so the board
needs nothing more: a thread per connection up to ``max_connections``, each request answered
with one ``sendall``, and a request that finds the worker free run in its connection's thread
(see ``engine.py``). It binds to 127.0.0.1 by default and refuses bodies over
``max_body_bytes`` with 413.

At start the server calibrates its own per-request handling with a few real requests to
itself over loopback (see ``edgeskip_runtime/service_time.py`` for why Algorithm 1 needs
it), then prints one line with the URL, the policy and Δreq.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from edgeskip_runtime.errors import EdgeskipError, UsageError
from edgeskip_runtime.policies import PolicyError
from edgeskip_runtime.server.engine import Dropped, InferenceEngine, Result
from edgeskip_runtime.server.http11 import (
    Connection,
    HTTPError,
    Message,
    ProtocolError,
    request_bytes,
    response_bytes,
    set_io_timeout,
)
from edgeskip_runtime.server.oip import OIPError, encode_infer_response, parse_infer_request

DEFAULT_MAX_BODY = 8 << 20
DRAIN_LIMIT = 64 << 20  # refused bodies up to this size are drained; larger ones get the connection closed


DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_IDLE_TIMEOUT_S = 30.0
DEFAULT_DRAIN_S = 10.0
OVER_LIMIT = response_bytes(503, b'{"error": "too many connections; retry later"}', close=True)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class EdgeskipHTTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog must hold a burst of concurrent senders: the stdlib default of 5 resets
    # connections under load instead of letting the server answer them (with 503 if busy).
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], engine: InferenceEngine, max_body_bytes: int = DEFAULT_MAX_BODY,
                 *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S) -> None:
        if max_connections < 1:
            raise UsageError(f"max_connections must be >= 1, got {max_connections}", setting="max_connections")
        if idle_timeout_s <= 0:
            raise UsageError(f"idle_timeout_s must be > 0, got {idle_timeout_s}", setting="idle_timeout_s")
        try:
            super().__init__(address, Handler)
        except OSError as e:  # the port is taken, or the address is not this machine's
            raise EdgeskipError(f"cannot listen on {address[0]}:{address[1]}: {e.strerror or e}",
                                setting="port") from e
        self.engine = engine
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[Handler] = set()
        self.starting = 0
        self.connections_lock = threading.Lock()
        self.draining = False

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, up to ``max_connections``. At the limit, the new connection takes the
        place of an idle keep-alive one (closed, as its idle timeout would); with none idle, it gets an
        immediate 503 and no thread."""
        with self.connections_lock:
            full = self.draining or len(self.connections) + self.starting >= self.max_connections
            idle = None if self.draining else next((h for h in self.connections if h.idle), None)
        if full and idle is not None and idle.close_if_idle():
            full = False
        if not full:
            with self.connections_lock:
                self.starting += 1  # counted until its handler registers itself
        else:
            with contextlib.suppress(OSError):  # the client went away: nothing to answer
                request.sendall(OVER_LIMIT)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def drain(self, timeout_s: float) -> bool:
        """Stop reading new requests: idle keep-alive connections are closed, busy ones close after
        their answer. True if every connection finished within ``timeout_s``."""
        with self.connections_lock:
            self.draining = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.connections_lock:
                handlers = list(self.connections)
            if not handlers and not self.starting:
                return True
            for h in handlers:  # again each round: a connection accepted just before the stop turns idle too
                h.close_if_idle()
            time.sleep(0.01)
        return False


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] | None = None


def json_response(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc).encode())


class Handler(socketserver.BaseRequestHandler):
    """One connection: requests are read, routed and answered in turn until it closes."""

    server: EdgeskipHTTPServer
    request: socket.socket

    def setup(self) -> None:
        set_io_timeout(self.request, self.server.idle_timeout_s)  # idle keep-alive and slow reads end here
        # Without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK can add ~40 ms to an answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._busy = False
        self._closing = False
        self._state_lock = threading.Lock()
        with self.server.connections_lock:
            self.server.starting -= 1
            self.server.connections.add(self)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self)

    @property
    def idle(self) -> bool:
        """Waiting for a request, and not already being closed."""
        return not self._busy and not self._closing

    def close_if_idle(self) -> bool:
        """Shut an idle connection now (its pending read returns EOF); a busy one closes after its answer."""
        with self._state_lock:
            if self._busy or self._closing:
                return False
            self._closing = True
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)
            return True

    def handle(self) -> None:
        conn = Connection(self.request)
        while True:
            try:
                if not conn.pending and not conn.fill():  # idle until the next request's first bytes
                    return
            except OSError:  # idle timeout, or shut by eviction or drain
                return
            t0 = time.perf_counter()  # the request is arriving: the server's handling starts here
            with self._state_lock:
                if self._closing:  # shut while the request came in: it cannot be answered, so it is not
                    return  # admitted either
                self._busy = True
            try:
                keep_alive = self._exchange(conn, t0)
            finally:
                with self._state_lock:
                    self._busy = False
            if not keep_alive or self.server.draining:
                return

    def _exchange(self, conn: Connection, t0: float) -> bool:
        """Read, route and answer one request; whether the connection stays open."""
        try:
            msg = conn.read_head()
        except ProtocolError as e:
            self._send(json_response(e.status, {"error": e.message}), close=True)
            return False
        except TimeoutError:  # a head that started and never ended
            self._send(json_response(408, {"error": "timed out reading the request head"}), close=True)
            return False
        except OSError:
            return False
        if msg is None:
            return False
        method, target, version = msg.start
        parts = target.split("?")[0].strip("/").split("/")
        infer = method == "POST" and parts[-1] == "infer"
        close = not msg.keep_alive() or self.server.draining
        engine = self.server.engine
        self._result: Result | None = None  # an infer request's, once it ran
        try:
            if version not in ("HTTP/1.1", "HTTP/1.0"):
                raise ProtocolError(505, f"{version[:20]!r} is not supported; send HTTP/1.1")
            body = self._read_body(conn, msg)
            if method == "GET":
                response = self._get(parts, target)
            elif method == "POST":
                response = self._post(parts, target, body, msg)
            else:
                close = True
                raise ProtocolError(501, f"method {method[:20]!r} is not supported; use GET or POST")
        except HTTPError as e:
            if infer:
                engine.reject(e.message)
            close = close or isinstance(e, ProtocolError) or e.status == 413  # framing unknown, or body unread
            response = json_response(e.status, {"error": e.message})
        except TimeoutError:
            if infer:
                engine.reject("timed out reading the request body")
            self._send(json_response(408, {"error": "timed out reading the request body"}), close=True)
            return False
        except ConnectionError:  # the client went away mid-body: nothing to answer
            if infer:
                engine.reject("connection closed before the request body arrived")
            return False
        except Exception as e:
            if infer:
                engine.reject(f"internal error: {e!r}")
            response = self._internal_error(method, target, e)
        self._send(response, close=close)
        if response.status == 200 and infer and self._result is not None:
            engine.observe_handling((time.perf_counter() - t0) * 1e3 - self._result.latency_ms)
        return not close

    def _send(self, response: Response, *, close: bool) -> None:
        with contextlib.suppress(OSError):  # the client went away: nothing more to do
            self.request.sendall(response_bytes(response.status, response.body, response.content_type,
                                                response.headers, close=close))

    def _internal_error(self, method: str, target: str, e: BaseException) -> Response:
        """Any unexpected failure still gets an answer, with an id that is in the server's log."""
        rid = uuid.uuid4().hex[:12]
        print(f"internal error {rid} on {method} {target[:200]}: {e!r}", file=sys.stderr, flush=True)
        traceback.print_exc(file=sys.stderr)
        return json_response(500, {"error": f"internal server error (id {rid}); the server's log has the details"})

    def _read_body(self, conn: Connection, msg: Message) -> bytes:
        n = msg.content_length()
        if not n:
            return b""
        expect = msg.headers.get("expect", "").lower()
        if n > self.server.max_body_bytes:
            if expect != "100-continue" and n <= DRAIN_LIMIT:
                conn.discard(n)  # so the client reads the 413 rather than a reset
            raise OIPError(413, f"request body of {n} bytes exceeds the limit of {self.server.max_body_bytes}")
        if expect == "100-continue":
            self.request.sendall(CONTINUE)
        return conn.read_body(n)

    def _model_route(self, parts: list[str]) -> str | None:
        """For ``v2/models/{name}[/versions/{v}][/ACTION]``: ACTION ('' for metadata), else None."""
        if len(parts) < 3 or parts[:2] != ["v2", "models"]:
            return None
        rest = parts[3:]
        if len(rest) >= 2 and rest[0] == "versions":
            if rest[1] != "1":
                raise OIPError(404, f"model {parts[2]!r} has no version {rest[1]!r}; it has version '1'")
            rest = rest[2:]
        if len(rest) > 1:
            return None
        name = parts[2]
        if name != self.server.engine.model_name:
            raise OIPError(404, f"unknown model {name!r}; this server serves {self.server.engine.model_name!r}")
        return rest[0] if rest else ""

    # -- routes ----------------------------------------------------------------------------
    def _get(self, parts: list[str], target: str) -> Response:
        engine = self.server.engine
        action = self._model_route(parts)
        if parts == ["v2", "health", "live"] or parts == ["v2", "health", "ready"]:
            return json_response(200, {"live": True} if parts[2] == "live" else {"ready": True})
        if parts == ["metrics"]:
            delta = engine.delta_req()
            body = engine.metrics.render(engine.model_name, delta["ms"] if delta else None).encode()
            return Response(200, body, "text/plain; version=0.0.4")
        if parts == ["v2"]:
            return json_response(200, {"name": "edgeskip", "version": "1", "extensions": ["binary_tensor_data"],
                                       "models": [engine.model_name]})
        if action == "":
            return json_response(200, self._metadata())
        if action == "ready":
            return json_response(200, {"name": engine.model_name, "ready": True})
        if action == "configs":
            return json_response(200, engine.configs())
        raise OIPError(404, f"no route for GET {target[:200]}")

    def _post(self, parts: list[str], target: str, body: bytes, msg: Message) -> Response:
        if self._model_route(parts) == "infer":
            return self._infer(body, msg)
        if len(parts) == 5 and parts[:3] == ["v2", "repository", "models"] and parts[4] == "load":
            return self._reload(parts[3], body)
        raise OIPError(404, f"no route for POST {target[:200]}")

    def _metadata(self) -> dict[str, Any]:
        engine = self.server.engine
        b = engine.current.bundle
        image = b.input("image")
        out_shape = b.manifest.outputs[0].shape if b.manifest.outputs else (1, -1)
        return {"name": engine.model_name, "versions": ["1"], "platform": "iree-vmfb",
                "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, *image.shape[1:]]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, *out_shape[1:]]}],
                "parameters": {"target": b.target_name, "skippable_blocks": engine.current.model.num_gates,
                               "policy": engine.policy_name, "accepts_uint8": True,
                               "dataset": b.manifest.dataset,
                               "no_skip_latency_ms": engine.current.points[0].latency_ms}}

    def _infer(self, body: bytes, msg: Message) -> Response:
        engine = self.server.engine
        hl = msg.headers.get("inference-header-content-length")
        try:
            header_length = int(hl) if hl is not None else None
        except ValueError:
            raise OIPError(400, f"bad Inference-Header-Content-Length {hl[:40]!r}") from None
        loaded = engine.current
        request = parse_infer_request(body, header_length, tuple(loaded.model.image_spec.shape[1:]),
                                      loaded.normalization)
        try:
            result = engine.submit(request)
        except Dropped as e:
            return json_response(503, {"error": f"dropped: {e}", "dropped": True})
        except Exception as e:  # failed in the module; the engine has counted it
            return self._internal_error("POST", "infer", e)
        self._result = result
        params = {"config": result.config, "n_skipped": result.n_skipped, "mask": list(result.mask),
                  "latency_ms": round(result.latency_ms, 4), "total_ms": round(result.total_ms, 4),
                  "policy": engine.policy_name, "reason": result.reason}
        body_out, headers = encode_infer_response(engine.model_name, request, result.logits, params)
        ctype = "application/octet-stream" if request.binary_output else "application/json"
        return Response(200, body_out, ctype, headers)

    RELOAD_FORM = '{"parameters": {"bundle": PATH, "policy": NAME, "settings": {FIELD: VALUE}}} (all optional)'

    def _reload(self, name: str, body: bytes) -> Response:
        """Triton-style load; refuses any field it would not act on, and answers what is loaded."""
        engine = self.server.engine
        params: dict[str, Any] = {}
        if body.strip():
            try:
                doc = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise OIPError(400, f"reload body must be JSON: {self.RELOAD_FORM}") from None
            if not isinstance(doc, dict):
                raise OIPError(400, f"reload body must be a JSON object: {self.RELOAD_FORM}")
            if set(doc) - {"parameters"}:
                raise OIPError(400, f"unknown reload fields {sorted(set(doc) - {'parameters'})}; "
                                    f"the form is {self.RELOAD_FORM}")
            params = doc.get("parameters") or {}
            if not isinstance(params, dict):
                raise OIPError(400, f"'parameters' must be an object: {self.RELOAD_FORM}")
            unknown = sorted(set(params) - {"bundle", "policy", "settings"})
            if unknown:
                raise OIPError(400, f"unknown reload parameters {unknown}; the form is {self.RELOAD_FORM}")
            for key in ("bundle", "policy"):
                if key in params and not isinstance(params[key], str):
                    raise OIPError(400, f"'{key}' must be a string")
            if "settings" in params and not isinstance(params["settings"], dict):
                raise OIPError(400, "'settings' must be an object of policy settings")
        path = params.get("bundle")
        if name != engine.model_name and path is None:
            raise OIPError(404, f"unknown model {name!r}; this server serves {engine.model_name!r}")
        try:
            loaded = engine.reload(path, policy=params.get("policy"), settings=params.get("settings"))
        except PolicyError as e:
            raise OIPError(400, f"bad policy settings, still serving the previous configuration: {e}") from None
        except Exception as e:  # any failure keeps the old bundle serving
            return json_response(400, {"error": f"reload failed, still serving the previous bundle: {e}"})
        return json_response(200, {"loaded": True, **loaded})


CALIBRATION_REQUESTS = 40


def _binary_request_body(engine: InferenceEngine) -> tuple[bytes, bytes]:
    """The JSON header and pixels of one binary UINT8 image request for the serving model."""
    shape = list(engine.current.model.image_spec.shape[1:])
    raw = bytes(math.prod(shape))
    header = json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": "UINT8",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return header, raw


def calibrate_handling(engine: InferenceEngine, host: str, port: int, n: int = CALIBRATION_REQUESTS) -> None:
    """Time the server's own handling with ``n`` real requests to itself (binary UINT8, as clients send)."""
    header, raw = _binary_request_body(engine)
    target = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    request = request_bytes("POST", f"/v2/models/{engine.model_name}/infer", f"{target}:{port}", header + raw,
                            {"Inference-Header-Content-Length": str(len(header))})
    with socket.create_connection((target, port), timeout=30) as sock, engine.calibration():
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock)
        for _ in range(n):
            sock.sendall(request)
            msg = conn.read_head()
            if msg is None:
                raise RuntimeError("the server closed the connection during calibration")
            conn.read_body(msg.content_length() or 0)
            if msg.start[1] != "200":
                raise RuntimeError(f"calibration request answered {msg.start[1]}")


def serve(engine: InferenceEngine, host: str = "127.0.0.1", port: int = 8000, *,
          max_body_bytes: int = DEFAULT_MAX_BODY, max_connections: int = DEFAULT_MAX_CONNECTIONS,
          idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S, drain_s: float = DEFAULT_DRAIN_S,
          ready: threading.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then drain; SIGHUP reloads the bundle path (e.g. after a deploy).

    Shutdown order: stop accepting; close idle connections; let every admitted request be
    processed and answered (up to ``drain_s``); stop the worker; flush and close the decision
    log last; release the IREE objects before the interpreter exits.
    """
    smallest = sum(map(len, _binary_request_body(engine)))
    if max_body_bytes < smallest:
        raise UsageError(f"max_body_bytes {max_body_bytes} is below the size of one binary image request for "
                         f"this model ({smallest} bytes)", setting="max_body_bytes")
    server = EdgeskipHTTPServer((host, port), engine, max_body_bytes, max_connections=max_connections,
                                idle_timeout_s=idle_timeout_s)
    stop = threading.Event()

    def on_hup(*_: Any) -> None:
        threading.Thread(target=_safe_reload, args=(engine,), daemon=True).start()

    def on_term(*_: Any) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="edgeskip-http")
    loop.start()
    try:
        port = server.server_address[1]
        calibrate_handling(engine, host, port)
        if ready is not None:
            ready.set()
        print(f"edgeskip serving {engine.model_name} on http://{host}:{port} ({startup_summary(engine)})",
              flush=True)
        while not stop.wait(0.5):  # the main thread stays free for signals
            pass
    finally:
        server.shutdown()  # no new connections
        loop.join()
        drained = server.drain(drain_s)
        server.server_close()
        engine.close()
        print(f"edgeskip stopped ({'drained' if drained else f'drain limit of {drain_s:g} s reached'})",
              flush=True)


def startup_summary(engine: InferenceEngine) -> str:
    s = engine.service_snapshot()
    text = f"policy {engine.policy_name}"
    delta = engine.delta_req()
    if delta is not None:
        text += f", delta_req {delta['ms']:.3f} ms from the {delta['source']}"
    return (text + f"; no-skip service time {s['service_ms']:.3f} ms = module {s['module_ms']:.3f} "
            f"+ handling {s['handling_ms']:.3f}")


def _safe_reload(engine: InferenceEngine) -> None:
    try:
        loaded = engine.reload()
        print(f"loaded {loaded['bundle']} (policy {loaded['policy']})", flush=True)
    except Exception as e:
        print(f"reload failed, still serving the previous bundle: {e}", flush=True)
