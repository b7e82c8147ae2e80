"""The no-skip service time the server can sustain: Algorithm 1's default Δreq (Korol et al.,
Sec. II-B, Algorithm 1 line 9; Sec. III-B: "Δreq = the time taken by the zero-skipping model").

Why not the module time alone: in Algorithm 1 a request that arrives more than Δreq after
the last processed one makes the controller skip one block less. The period at which the
server saturates without skipping is the *service* time of one request, the compiled
module *plus* the server's own per-request work (HTTP parsing, queue hand-off, encoding).
On the paper's board the module is nearly all of it; on a fast host the handling can be as
large as the module. If Δreq were the module time and the arrival period T fell between the
two, every processed request would arrive "idle longer than Δreq" and undo the step up that
the previous drop made: the controller would oscillate at no skipping and never adapt.

So the estimate is ``service_ms = module_ms + handling_ms``:

* ``module_ms``: median time of the no-skip configuration in the compiled module, measured
  when a new bundle is loaded and tracked online from *every* request served: a request
  run with configuration k counts as its module time × (profiled no-skip latency / profiled
  latency of k). Without that, an adaptive policy that rarely runs no-skip would keep the
  calibration figure, and a tight calibration loop runs faster (warm caches) than serving
  with idle gaps does;
* ``handling_ms``: median of (whole request time − module time) over recent requests, as
  measured by the front end that owns the request (the HTTP handler from the first byte read
  to the last byte written, or the in-process driver from admission to completion),
  calibrated at start and tracked online.

Both are medians over a sliding window, so a stray slow request (a page fault, a garbage
collection) does not move Δreq.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from typing import Any


class _WindowMedian:
    """Median of the last ``window`` samples, recomputed every ``every`` samples (cheap per request)."""

    def __init__(self, initial: float | None, window: int, every: int) -> None:
        self._samples: deque[float] = deque([] if initial is None else [initial], maxlen=window)
        self._every = every
        self._pending = 0
        self.value = initial
        self.count = 0

    def add(self, x: float) -> None:
        self._samples.append(x)
        self.count += 1
        self._pending += 1
        if self.value is None or self._pending >= self._every:
            self.value = statistics.median(self._samples)
            self._pending = 0

    def reset(self, values: list[float]) -> None:
        self._samples.clear()
        self._samples.extend(values)
        self._pending = 0
        self.value = statistics.median(values) if values else None


class ServiceTimeEstimate:
    """``module_ms + handling_ms`` of a no-skip request; thread-safe, updated online."""

    def __init__(self, module_ms: float, handling_ms: float = 0.0, *, window: int = 64, every: int = 8) -> None:
        if module_ms <= 0:
            raise ValueError(f"module time must be positive, got {module_ms}")
        self._lock = threading.Lock()
        self._module = _WindowMedian(module_ms, window, every)
        self._handling = _WindowMedian(handling_ms, window, every)

    @property
    def module_ms(self) -> float:
        return float(self._module.value or 0.0)

    @property
    def handling_ms(self) -> float:
        return float(self._handling.value or 0.0)

    @property
    def service_ms(self) -> float:
        return self.module_ms + self.handling_ms

    def calibrate_module(self, samples_ms: list[float]) -> None:
        """A new bundle: its no-skip module time replaces the old one."""
        with self._lock:
            self._module.reset(list(samples_ms))

    def calibrate_handling(self, samples_ms: list[float]) -> None:
        with self._lock:
            self._handling.reset([max(0.0, s) for s in samples_ms])

    def observe_module(self, ms: float) -> None:
        """The module time of one request, as no-skip time (scaled by the caller when it skipped blocks)."""
        with self._lock:
            self._module.add(ms)

    def observe_handling(self, ms: float) -> None:
        """One request's time in the server outside the module."""
        with self._lock:
            self._handling.add(max(0.0, ms))

    def snapshot(self) -> dict[str, Any]:
        return {"service_ms": round(self.service_ms, 4), "module_ms": round(self.module_ms, 4),
                "handling_ms": round(self.handling_ms, 4), "observed_requests": self._handling.count}
