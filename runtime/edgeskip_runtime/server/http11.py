"""HTTP/1.1 on a plain socket: just enough of RFC 9112 for the Open Inference Protocol.

Why not ``http.server``: its per-request cost (header parsing through ``email.parser``, one
write per header line, a buffered file object per socket) was about half of the server's
whole overhead on the host, and more on a Cortex-A7. This module reads a message head with
one ``recv`` in the common case, parses it with byte splits, and writes a response with one
``sendall``. It is shared by the server and the evaluation client, so both speak the same
subset:

* request and status lines, header fields (names case-insensitive, no obsolete line folding),
  bodies framed by ``Content-Length`` only: a ``Transfer-Encoding`` is refused with 411, a
  conflicting duplicate ``Content-Length`` with 400;
* persistent connections (HTTP/1.1 default, ``Connection: close``; HTTP/1.0 with
  ``Connection: keep-alive``), pipelined requests, ``Expect: 100-continue``;
* limits on the head size (431) and the header count, and a read timeout set on the socket.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from dataclasses import dataclass
from email.utils import formatdate

MAX_HEAD_BYTES = 64 << 10
MAX_HEADERS = 100
# Not more: CPython allocates the whole size for every recv, and above glibc's mmap threshold
# (128 KiB) that is an mmap and munmap per call (measured: 15 µs per recv at 256 KiB, 1.3 at 64).
RECV_BYTES = 64 << 10

REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class HTTPError(Exception):
    """A request the server answers with ``status`` and ``message`` instead of serving it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ProtocolError(HTTPError):
    """The peer broke HTTP itself (framing, head): the server answers, then closes the connection."""


@dataclass
class Message:
    """A parsed head: the start line's three parts and the header fields (lower-case names)."""

    start: tuple[str, str, str]
    headers: dict[str, str]

    def content_length(self) -> int | None:
        if "transfer-encoding" in self.headers:
            raise ProtocolError(411, "Transfer-Encoding (chunked bodies) is not supported; send Content-Length")
        value = self.headers.get("content-length")
        if value is None:
            return None
        if not value.isdigit() or len(value) > 18:  # digits only: no sign, no spaces, no bignums
            raise ProtocolError(400, f"bad Content-Length {value!r}")
        return int(value)

    def keep_alive(self) -> bool:
        """Whether the connection persists after this message (RFC 9112, Sec. 9.3)."""
        version = self.start[0] if self.start[0].startswith("HTTP/") else self.start[2]
        field = self.headers.get("connection")
        if field is None:
            return version == "HTTP/1.1"
        tokens = {t.strip().lower() for t in field.split(",")}
        return "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)


def parse_head(raw: bytes) -> Message:
    """Parse a head (start line and fields, without the final empty line)."""
    lines = raw.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    if len(start) != 3 or not all(start):
        raise ProtocolError(400, f"malformed start line {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise ProtocolError(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name or "\t" in name:
            raise ProtocolError(400, f"malformed header field {line[:80]!r}")
        key, value = name.lower(), value.strip(" \t")
        if key in headers:
            if key == "content-length" and headers[key] != value:
                raise ProtocolError(400, "conflicting Content-Length fields")
            if key != "content-length":
                headers[key] += ", " + value
            continue
        headers[key] = value
    return Message((start[0], start[1], start[2]), headers)


class Connection:
    """One socket, read as a stream of messages; bytes beyond the current message are kept.

    The buffer is the last received ``bytes`` and an offset into it, so that a message that
    arrives in one segment (the usual case) is sliced out of it with no further copies."""

    def __init__(self, sock: socket.socket, max_head_bytes: int = MAX_HEAD_BYTES, *, busy_poll_s: float = 0.0) -> None:
        self.sock = sock
        self.max_head_bytes = max_head_bytes
        # > 0: a read spins on the non-blocking socket up to this long before it blocks. A latency
        # benchmark's client does this (as sockperf and netperf can) so that its own wake-up from
        # an idle CPU is not counted as the server's time.
        self.busy_poll_s = busy_poll_s
        self._timeout = sock.gettimeout()
        if busy_poll_s > 0:
            sock.setblocking(False)
        self._buf = b""
        self._pos = 0

    @property
    def pending(self) -> int:
        """Bytes received and not yet read (e.g. a pipelined next request)."""
        return len(self._buf) - self._pos

    def send_all(self, data: bytes) -> None:
        if self.busy_poll_s <= 0:
            self.sock.sendall(data)
            return
        view = memoryview(data)  # the socket is non-blocking: wait for room when its buffer is full
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                if not select.select([], [self.sock], [], self._timeout)[1]:
                    raise TimeoutError("timed out sending to the peer") from None

    def _recv(self) -> bytes:
        if self.busy_poll_s > 0:
            return self._recv_polling()
        try:
            return self.sock.recv(RECV_BYTES)
        except BlockingIOError:  # a kernel-side timeout (set_io_timeout) ran out
            raise TimeoutError("timed out waiting for the peer") from None

    def _recv_polling(self) -> bytes:
        spin_until = time.perf_counter() + self.busy_poll_s
        while True:
            try:
                return self.sock.recv(RECV_BYTES)
            except BlockingIOError:
                if time.perf_counter() > spin_until:
                    break
        readable, _, _ = select.select([self.sock], [], [], self._timeout)
        if not readable:
            raise TimeoutError("timed out waiting for the peer")
        return self.sock.recv(RECV_BYTES)

    def fill(self) -> bool:
        """Receive more bytes (blocking up to the socket's timeout); False at end of stream."""
        chunk = self._recv()
        if not chunk:
            return False
        self._buf = chunk if self._pos == len(self._buf) else self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def read_head(self) -> Message | None:
        """The next message's head, or None if the stream ended cleanly before its first byte."""
        while True:
            if self._buf.startswith(b"\r\n", self._pos):  # RFC 9112, Sec. 2.2: ignore empty lines before it
                self._pos += 2
                continue
            end = self._buf.find(b"\r\n\r\n", self._pos)
            if end >= 0:
                break
            if self.pending > self.max_head_bytes:
                raise ProtocolError(431, f"message head exceeds {self.max_head_bytes} bytes")
            if not self.fill():
                if self._buf[self._pos :].strip():
                    raise ProtocolError(400, "connection closed in the middle of a message head")
                return None
        if end - self._pos > self.max_head_bytes:
            raise ProtocolError(431, f"message head exceeds {self.max_head_bytes} bytes")
        head = self._buf[self._pos : end]
        self._pos = end + 4
        return parse_head(head)

    def read_body(self, n: int) -> bytes:
        if self.pending >= n:  # the usual case: already here (a slice of a whole segment is no copy)
            self._pos += n
            return self._buf[self._pos - n : self._pos]
        parts, have = [self._buf[self._pos :]], self.pending
        while have < n:  # a large body: gather the segments and join them once
            chunk = self._recv()
            if not chunk:
                raise ConnectionError(f"connection closed after {have} of {n} body bytes")
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self._buf, self._pos = data, n  # bytes beyond the body stay buffered
        return data[:n]

    def read_to_end(self) -> bytes:
        """Everything until the peer closes (a body without a length)."""
        parts = [self._buf[self._pos :]]
        while chunk := self._recv():
            parts.append(chunk)
        self._buf, self._pos = b"", 0
        return b"".join(parts)

    def discard(self, n: int) -> None:
        """Read and drop ``n`` body bytes (so the peer reads our answer, not a reset)."""
        n -= min(n, self.pending)
        self._buf, self._pos = b"", 0
        while n > 0:
            chunk = self.sock.recv(min(RECV_BYTES, n))
            if not chunk:
                return
            n -= len(chunk)


def set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """Time out reads and writes on ``sock`` after ``seconds`` without progress.

    Kernel-side (``SO_RCVTIMEO``/``SO_SNDTIMEO`` on a blocking socket) where the platform's
    ``struct timeval`` can be matched: Python's own socket timeout polls before every call, an
    extra system call per read and per write (measured: ~10 µs of a loopback round trip here).
    ``timeval`` is two 64-bit fields on 64-bit and time64 platforms, two 32-bit ones on older
    armhf; the one the kernel reads back unchanged is the one it took."""
    sec = int(seconds)
    usec = round((seconds - sec) * 1e6)
    for fmt in ("qq", "ll"):
        packed = struct.pack(fmt, sec, usec)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, packed)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, len(packed)) == packed:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, packed)
                sock.settimeout(None)
                return
        except (OSError, struct.error):
            continue
    with contextlib.suppress(OSError):  # undo a value the kernel may have half-read
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
    sock.settimeout(seconds)


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date field's value, formatted once per second (RFC 9110, Sec. 6.6.1)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def response_bytes(status: int, body: bytes, content_type: str = "application/json",
                   headers: dict[str, str] | None = None, *, close: bool = False) -> bytes:
    """A whole response, head and body, ready for one ``sendall``."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
    if close:
        extra += "Connection: close\r\n"
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nServer: edgeskip\r\nDate: {http_date()}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n")
    return head.encode("latin-1") + body


def request_bytes(method: str, target: str, host: str, body: bytes = b"",
                  headers: dict[str, str] | None = None) -> bytes:
    """A whole request, head and body, ready for one ``sendall``."""
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if body or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
