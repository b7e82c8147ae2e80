"""The inference engine: one pinned worker, admission by drop (or a bounded queue), and the
depth policy in the loop (Korol et al., Sec. II-B, Algorithm 1; Sec. III-B: MLPerf-style drop).

A request that arrives while the worker is busy is dropped at once (``Dropped``) and the
policy hears of it; with ``max_queue > 0`` up to that many requests wait instead, like
Triton's ``max_queue_size``. The worker asks the policy for a configuration just before it
runs a request and feeds that mask with the image to the compiled module. A new bundle is
loaded, verified and smoke-tested beside the serving one and swapped in only if all of that
succeeds (hot reload).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeskip_runtime.bundle import Bundle
from edgeskip_runtime.energy import EnergyMeter
from edgeskip_runtime.module import CompiledModel
from edgeskip_runtime.pinning import pin_current_thread
from edgeskip_runtime.policies import OperatingPoint, Policy, PolicySettings, Request, create_policy
from edgeskip_runtime.server.decision_log import DecisionLog
from edgeskip_runtime.server.metrics import ServerMetrics
from edgeskip_runtime.server.oip import InferRequest


class Dropped(Exception):
    """The worker was busy (and the queue, if any, full): the request is not processed."""


@dataclass
class Loaded:
    """Everything that belongs to one bundle; swapped as a whole on reload."""

    bundle: Bundle
    model: CompiledModel
    points: list[OperatingPoint]
    policy: Policy


@dataclass
class Result:
    logits: np.ndarray
    config: int  # index in the Pareto file
    mask: tuple[int, ...]
    n_skipped: int
    latency_ms: float  # time in the compiled module
    total_ms: float  # arrival to completion
    reason: str


@dataclass
class _Job:
    request: InferRequest
    rid: str
    arrival: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None


class InferenceEngine:
    def __init__(self, bundle_path: str | Path, *, policy: str = "algorithm1", settings: PolicySettings | None = None,
                 driver: str = "local-sync", pin: bool = True, max_queue: int = 0,
                 decision_log: DecisionLog | None = None, sla_ms: float | None = None, clock=time.monotonic) -> None:
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.policy_name = policy
        self.settings = settings or PolicySettings()
        self.driver = driver
        self.pin = pin
        self.max_queue = max_queue
        self.sla_ms = sla_ms
        self.clock = clock
        self.log = decision_log or DecisionLog(None)
        self.bundle_path = Path(bundle_path)
        self.current = self._load(self.bundle_path)
        self.metrics = ServerMetrics(self.current.model.num_gates,
                                     EnergyMeter(self.current.bundle.manifest.get("target", {}).get("power")))
        self._lock = threading.Lock()  # policy state and admission
        self._model_lock = threading.Lock()  # the worker's use of the model vs. a reload swap
        self._slots = threading.BoundedSemaphore(1 + max_queue)
        self._in_flight = 0
        self._ids = itertools.count(1)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pinned_for: Path | None = None
        self._worker = threading.Thread(target=self._run, name="edgeskip-inference", daemon=True)
        self._worker.start()

    # -- loading ---------------------------------------------------------------------------
    def _load(self, path: Path) -> Loaded:
        bundle = Bundle.open(path)
        model = CompiledModel(bundle, driver=self.driver, pin=False)  # the worker thread pins itself
        points = OperatingPoint.from_pareto(bundle.pareto)
        if any(len(p.mask) != model.num_gates for p in points):
            raise ValueError(f"pareto.json of {path} has masks of another length than the module's "
                             f"{model.num_gates} gates")
        policy = create_policy(self.policy_name, points, self.settings)
        probe = np.zeros((1, *model.image_spec.shape[1:]), dtype=np.float32)
        out = model.infer(probe, points[0].mask)  # smoke test before it may serve
        if not np.isfinite(out).all():
            raise ValueError(f"bundle {path} produced non-finite output on a zero image")
        return Loaded(bundle, model, points, policy)

    def reload(self, path: str | Path | None = None, *, policy: str | None = None,
               settings: PolicySettings | None = None) -> str:
        """Load ``path`` (default: the serving path again, e.g. a ``current`` link), optionally with
        another policy or settings; on any failure the old bundle and policy keep serving."""
        target = Path(path) if path else self.bundle_path
        old = (self.policy_name, self.settings)
        self.policy_name, self.settings = policy or self.policy_name, settings or self.settings
        try:
            new = self._load(target)
        except BaseException:
            self.policy_name, self.settings = old
            raise
        with self._model_lock, self._lock:
            self.current, self.bundle_path = new, target
        self.log.write("reload", None, self.policy_name, new.policy.state(), 0, new.points[0].n_skipped,
                       f"loaded {target}")
        return (f"loaded {target} ({new.bundle.target_name}, {len(new.points)} configurations, "
                f"policy {self.policy_name})")

    # -- serving ---------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return str(self.current.bundle.manifest.get("model", "model"))

    def submit(self, request: InferRequest) -> Result:
        """Run ``request`` now, or raise :class:`Dropped` if the worker is busy."""
        arrival = self.clock()
        rid = request.id or f"req-{next(self._ids)}"
        req = Request(rid, arrival, request.priority, request.latency_budget_ms)
        self.metrics.receive()
        with self._lock:
            busy = self._in_flight > 0
            policy = self.current.policy
            if not self._slots.acquire(blocking=False):
                reason = policy.on_busy(req, arrival)
                self.metrics.outcome("dropped")
                self.log.write("drop", rid, self.policy_name, policy.state() if self.log.enabled else {}, None,
                               None, reason)
                raise Dropped("worker busy" + (" and queue full" if self.max_queue else ""))
            self._in_flight += 1
            if busy:
                reason = policy.on_busy(req, arrival)
                self.log.write("queue", rid, self.policy_name, policy.state(), None, None, reason)
            self.metrics.queue_depth = self._in_flight - 1
        job = _Job(request, rid, arrival)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def reject(self, reason: str) -> None:
        """Count a request refused before admission (bad input); the policy does not see it."""
        self.metrics.receive()
        self.metrics.outcome("rejected")
        self.log.write("reject", None, self.policy_name, {}, None, None, reason)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job.result = self._process(job)
            except BaseException as e:
                job.error = e
                self.metrics.outcome("rejected")
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self.metrics.queue_depth = max(0, self._in_flight - 1)
                self._slots.release()
                job.done.set()

    def _process(self, job: _Job) -> Result:
        with self._model_lock:
            loaded = self.current
            if self.pin and self._pinned_for != loaded.bundle.path:
                pin_current_thread(loaded.bundle.serving_cores)
                self._pinned_for = loaded.bundle.path
            req = Request(job.rid, job.arrival, job.request.priority, job.request.latency_budget_ms)
            with self._lock:
                decision = loaded.policy.select(req, self.clock())
                point = loaded.policy.points[decision.config]
            t0 = time.perf_counter()
            logits = loaded.model.infer(job.request.images, point.mask)
            latency_ms = (time.perf_counter() - t0) * 1e3
            with self._lock:
                loaded.policy.on_done(req, self.clock(), latency_ms)
                state = loaded.policy.state() if self.log.enabled else {}  # skip the dict when not logging
        total_ms = (self.clock() - job.arrival) * 1e3
        budget = job.request.latency_budget_ms if job.request.latency_budget_ms is not None else self.sla_ms
        self.metrics.processed(latency_ms / 1e3, point.index, point.n_skipped,
                               budget is not None and total_ms > budget)
        self.log.write("process", job.rid, self.policy_name, state, point.index, point.n_skipped, decision.reason)
        return Result(logits, point.index, point.mask, point.n_skipped, latency_ms, total_ms, decision.reason)

    def configs(self) -> dict[str, Any]:
        loaded = self.current
        allowed = {p.index for p in loaded.policy.points}
        current = self.metrics.current_config
        return {"policy": self.policy_name, "current": current,
                "configs": [{"index": p.index, "mask": list(p.mask), "n_skipped": p.n_skipped,
                             "accuracy": p.accuracy, "latency_ms": p.latency_ms, "latency_p99_ms": p.latency_p99_ms,
                             "allowed": p.index in allowed} for p in loaded.points]}

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)
        self.log.close()
