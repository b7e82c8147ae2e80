"""A small Open Inference Protocol client: binary tensors over keep-alive HTTP/1.1 connections.

It speaks HTTP through the runtime's own ``http11`` module on a plain socket, one ``sendall``
per request: ``http.client`` costs about 0.2 ms more per round trip on the host (header
parsing through ``email.parser``), which the server-overhead benchmark would count.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any
from urllib.parse import urlparse

import numpy as np
from edgeskip_runtime.errors import EdgeskipError, UsageError
from edgeskip_runtime.server.http11 import Connection, ProtocolError, request_bytes

_FP32 = np.dtype("<f4")


class ServerError(EdgeskipError, ValueError):
    """The server answered, and refused: its message says why."""


class ServerUnreachable(EdgeskipError, ConnectionError):
    """The server did not answer; the message names the URL."""


class OIPClient:
    def __init__(self, url: str, timeout_s: float = 30.0, *, busy_poll_s: float = 0.0) -> None:
        """``busy_poll_s`` > 0: wait for each answer by spinning up to that long before blocking
        (for latency benchmarks: see ``http11.Connection``); it keeps a CPU busy meanwhile."""
        u = urlparse(url if "://" in url else f"http://{url}")
        if u.scheme != "http" or not u.hostname:
            raise UsageError(f"server URL must look like http://HOST:PORT, got {url!r}")
        self.url = f"http://{u.hostname}:{u.port or 80}"
        self.host, self.port = u.hostname, u.port or 80
        self.timeout_s = timeout_s
        self.busy_poll_s = busy_poll_s
        self._local = threading.local()  # one keep-alive connection per thread
        self._infer_heads: dict[tuple[Any, ...], bytes] = {}  # infer_uint8's request bytes before the pixels

    def _conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            except OSError as e:
                raise ServerUnreachable(f"no answer from {self.url}: {e}") from e
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = self._local.conn = Connection(sock, busy_poll_s=self.busy_poll_s)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.sock.close()
            self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._drop()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request; returns the status, the header fields (lower-case names) and the body."""
        return self._round_trip(request_bytes(method, path, f"{self.host}:{self.port}", body or b"", headers), path)

    def _round_trip(self, wire: bytes, path: str) -> tuple[int, dict[str, str], bytes]:
        for attempt in (0, 1):  # one retry on a connection the server closed while idle
            reused = getattr(self._local, "conn", None) is not None
            conn = self._conn()
            try:
                conn.send_all(wire)
                msg = conn.read_head()
                if msg is None:
                    raise ConnectionError("the server closed the connection")
                n = msg.content_length()
                keep_alive = msg.keep_alive()
                # no length and no keep-alive: the body runs to the end of the stream
                data = conn.read_to_end() if n is None and not keep_alive else conn.read_body(n or 0)
                if not keep_alive:
                    self._drop()
                return int(msg.start[1]), msg.headers, data
            except (OSError, ProtocolError, ValueError) as e:
                self._drop()
                if attempt or not reused:
                    raise ServerUnreachable(f"no answer from {self.url}{path}: {e}") from e
        raise AssertionError("unreachable")

    def get_json(self, path: str) -> dict[str, Any]:
        status, _, body = self.request("GET", path)
        if status != 200:
            raise ServerError(f"GET {path} answered {status}: {body[:200]!r}")
        return json.loads(body)

    def model_name(self) -> str:
        return self.get_json("/v2")["models"][0]

    def metadata(self, model: str) -> dict[str, Any]:
        return self.get_json(f"/v2/models/{model}")

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[2].decode()

    def load(self, model: str, parameters: dict[str, Any]) -> dict[str, Any]:
        status, _, body = self.request("POST", f"/v2/repository/models/{model}/load",
                                       json.dumps({"parameters": parameters}).encode())
        doc = json.loads(body)
        if status != 200:
            raise ServerError(doc.get("error", f"load answered {status}"))
        return doc

    def infer_uint8(self, model: str, image: np.ndarray, *, priority: int | None = None,
                    latency_budget_ms: float | None = None,
                    label: int | None = None) -> tuple[int, dict[str, Any], np.ndarray | None]:
        """Send raw uint8 pixels ``(C, H, W)`` in binary form; returns status, response header, logits."""
        params: dict[str, Any] = {}
        if priority is not None:
            params["priority"] = priority
        if latency_budget_ms is not None:
            params["latency_budget_ms"] = latency_budget_ms
        if label is not None:
            params["label"] = label
        raw = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
        key = (model, image.shape, *params.items())
        prefix = self._infer_heads.get(key)
        if prefix is None:  # the request head and JSON header, the same for every image of this form
            header = json.dumps({"parameters": params,
                                 "inputs": [{"name": "image", "shape": list(image.shape), "datatype": "UINT8",
                                             "parameters": {"binary_data_size": len(raw)}}],
                                 "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
            prefix = request_bytes("POST", f"/v2/models/{model}/infer", f"{self.host}:{self.port}", header + raw,
                                   {"Inference-Header-Content-Length": str(len(header)),
                                    "Content-Type": "application/octet-stream"})[: -len(raw)]
            if len(self._infer_heads) < 4096:  # labels vary per image; bounded all the same
                self._infer_heads[key] = prefix
        status, headers, body = self._round_trip(prefix + raw, f"/v2/models/{model}/infer")
        if status != 200:
            try:
                return status, json.loads(body), None
            except json.JSONDecodeError:
                return status, {"error": body[:200].decode(errors="replace")}, None
        n = int(headers["inference-header-content-length"])
        doc = json.loads(body[:n])
        logits = np.frombuffer(body, dtype=_FP32, offset=n).reshape(doc["outputs"][0]["shape"])
        return status, doc, logits


def parse_metrics(text: str) -> dict[str, float]:
    """The unlabelled-by-outcome totals of the server's Prometheus text (sums over label sets)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{")[0]
        if name == "edgeskip_requests_total":
            name += "_" + name_labels.split('outcome="')[1].split('"')[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
        if name == "edgeskip_energy_joules_total":
            out["energy_estimate"] = float('estimate="true"' in name_labels)
            out["energy_source_is_sensor"] = float("powercap" in name_labels or "hwmon" in name_labels)
    return out


def energy_between(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The energy a server reported spending between two :func:`parse_metrics` snapshots."""
    return {"joules": after.get("edgeskip_energy_joules_total", 0.0) - before.get("edgeskip_energy_joules_total", 0.0),
            "estimate": bool(after.get("energy_estimate", 1.0)),
            "source": "sensor" if after.get("energy_source_is_sensor") else "power model (estimate)"}
