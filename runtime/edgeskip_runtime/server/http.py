"""HTTP front end of the server: Open Inference Protocol routes, metrics and hot reload.

Routes:

* ``GET /v2/health/live``, ``GET /v2/health/ready``
* ``GET /v2/models/{name}``: metadata (inputs, outputs, platform)
* ``POST /v2/models/{name}/infer``: JSON or binary tensors; 200, or 503 when dropped
* ``GET /v2/models/{name}/configs``: the Pareto configurations and the current one
* ``POST /v2/repository/models/{name}/load``: hot reload (optional JSON ``{"parameters": {"bundle": PATH}}``)
* ``GET /metrics``: Prometheus text format

Plain stdlib (``ThreadingHTTPServer``) so the board needs nothing more; it binds to
127.0.0.1 by default and refuses bodies over ``max_body_bytes`` with 413.
"""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgeskip_runtime.policies import PolicySettings
from edgeskip_runtime.server.engine import Dropped, InferenceEngine
from edgeskip_runtime.server.oip import OIPError, encode_infer_response, parse_infer_request

DEFAULT_MAX_BODY = 8 << 20
DRAIN_LIMIT = 64 << 20  # refused bodies up to this size are drained; larger ones get the connection closed


class EdgeskipHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog must hold a burst of concurrent senders: the stdlib default of 5 resets
    # connections under load instead of letting the server answer them (with 503 if busy).
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], engine: InferenceEngine, max_body_bytes: int = DEFAULT_MAX_BODY):
        super().__init__(address, Handler)
        self.engine = engine
        self.max_body_bytes = max_body_bytes


class Handler(BaseHTTPRequestHandler):
    server: EdgeskipHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # decisions go to the decision log; access logs would cost time per request

    # -- helpers ---------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode())

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise OIPError(411, "chunked bodies are not supported; send Content-Length")
            return b""
        try:
            n = int(length)
        except ValueError:
            raise OIPError(400, f"bad Content-Length {length!r}") from None
        if n < 0:
            raise OIPError(400, f"bad Content-Length {length!r}")
        if n > self.server.max_body_bytes:
            self.close_connection = True
            remaining = n if n <= DRAIN_LIMIT else 0  # drain, so the client reads the 413 rather than a reset
            while remaining > 0 and (chunk := self.rfile.read(min(1 << 16, remaining))):
                remaining -= len(chunk)
            raise OIPError(413, f"request body of {n} bytes exceeds the limit of {self.server.max_body_bytes}")
        return self.rfile.read(n)

    def _model_path(self, parts: list[str]) -> bool:
        name = parts[2]
        if name != self.server.engine.model_name:
            raise OIPError(404, f"unknown model {name!r}; this server serves {self.server.engine.model_name!r}")
        return True

    # -- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        engine = self.server.engine
        parts = self.path.split("?")[0].strip("/").split("/")
        try:
            if parts == ["v2", "health", "live"] or parts == ["v2", "health", "ready"]:
                self._json(200, {"live": True} if parts[2] == "live" else {"ready": True})
            elif parts == ["metrics"]:
                self._send(200, engine.metrics.render(engine.model_name).encode(), "text/plain; version=0.0.4")
            elif parts == ["v2"]:
                self._json(200, {"name": "edgeskip", "version": "1", "extensions": ["binary_tensor_data"],
                                 "models": [engine.model_name]})
            elif len(parts) == 3 and parts[:2] == ["v2", "models"] and self._model_path(parts):
                self._json(200, self._metadata())
            elif len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "configs":
                self._model_path(parts)
                self._json(200, engine.configs())
            else:
                raise OIPError(404, f"no route for GET {self.path}")
        except OIPError as e:
            self._error(e.status, e.message)

    def do_POST(self) -> None:
        engine = self.server.engine
        parts = self.path.split("?")[0].strip("/").split("/")
        try:
            body = self._read_body()
            if len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer" and self._model_path(parts):
                self._infer(body)
            elif len(parts) == 5 and parts[:3] == ["v2", "repository", "models"] and parts[4] == "load":
                self._reload(parts[3], body)
            else:
                raise OIPError(404, f"no route for POST {self.path}")
        except OIPError as e:
            if len(parts) == 4 and parts[-1] == "infer":
                engine.reject(e.message)
            self._error(e.status, e.message)

    def _metadata(self) -> dict[str, Any]:
        engine = self.server.engine
        b = engine.current.bundle
        image = b.input("image")
        out = b.manifest.get("outputs", [{"name": "logits", "shape": [1, -1]}])[0]
        return {"name": engine.model_name, "versions": ["1"], "platform": "iree-vmfb",
                "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, *image.shape[1:]]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, *out["shape"][1:]]}],
                "parameters": {"target": b.target_name, "skippable_blocks": engine.current.model.num_gates,
                               "policy": engine.policy_name, "accepts_uint8": True,
                               "dataset": b.manifest.get("dataset"),
                               "no_skip_latency_ms": engine.current.points[0].latency_ms}}

    def _infer(self, body: bytes) -> None:
        engine = self.server.engine
        hl = self.headers.get("Inference-Header-Content-Length")
        try:
            header_length = int(hl) if hl is not None else None
        except ValueError:
            raise OIPError(400, f"bad Inference-Header-Content-Length {hl!r}") from None
        norm = engine.current.bundle.manifest.get("normalization", {})
        c = engine.current.model.image_spec.shape[1]
        request = parse_infer_request(body, header_length, tuple(engine.current.model.image_spec.shape[1:]),
                                      norm.get("mean", [0.0] * c), norm.get("std", [1.0] * c))
        try:
            result = engine.submit(request)
        except Dropped as e:
            self._json(503, {"error": f"dropped: {e}", "dropped": True})
            return
        params = {"config": result.config, "n_skipped": result.n_skipped, "mask": list(result.mask),
                  "latency_ms": round(result.latency_ms, 4), "total_ms": round(result.total_ms, 4),
                  "policy": engine.policy_name, "reason": result.reason}
        body_out, headers = encode_infer_response(engine.model_name, request, result.logits, params)
        ctype = "application/octet-stream" if request.binary_output else "application/json"
        self._send(200, body_out, ctype, headers)

    def _reload(self, name: str, body: bytes) -> None:
        """Triton-style load: optional ``{"parameters": {"bundle": PATH, "policy": NAME, "settings": {...}}}``."""
        engine = self.server.engine
        params: dict[str, Any] = {}
        if body:
            try:
                doc = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise OIPError(400, 'reload body must be JSON like {"parameters": {"bundle": PATH}}') from None
            params = doc.get("parameters") or {} if isinstance(doc, dict) else {}
            if not isinstance(params, dict):
                raise OIPError(400, "'parameters' must be an object")
        path = params.get("bundle")
        if name != engine.model_name and path is None:
            raise OIPError(404, f"unknown model {name!r}; this server serves {engine.model_name!r}")
        settings = None
        if "settings" in params:
            try:
                settings = PolicySettings(**params["settings"])
            except TypeError as e:
                raise OIPError(400, f"bad policy settings: {e}") from None
        try:
            message = engine.reload(path, policy=params.get("policy"), settings=settings)
        except Exception as e:  # any failure keeps the old bundle serving
            self._json(400, {"error": f"reload failed, still serving the previous bundle: {e}"})
            return
        self._json(200, {"loaded": True, "message": message})


def serve(engine: InferenceEngine, host: str = "127.0.0.1", port: int = 8000, *,
          max_body_bytes: int = DEFAULT_MAX_BODY, ready: threading.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM; SIGHUP reloads the bundle path (e.g. after a deploy)."""
    server = EdgeskipHTTPServer((host, port), engine, max_body_bytes)

    def on_hup(*_: Any) -> None:
        threading.Thread(target=_safe_reload, args=(engine,), daemon=True).start()

    def on_term(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGTERM, on_term)
    if ready is not None:
        ready.set()
    print(f"edgeskip serving {engine.model_name} on http://{host}:{server.server_address[1]} "
          f"(policy {engine.policy_name})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()


def _safe_reload(engine: InferenceEngine) -> None:
    try:
        print(engine.reload(), flush=True)
    except Exception as e:
        print(f"reload failed, still serving the previous bundle: {e}", flush=True)
