"""The inference engine: one request at a time in the module, admission by drop (or a bounded queue), and the
depth policy in the loop (Korol et al., Sec. II-B, Algorithm 1; Sec. III-B: MLPerf-style drop).

Admission is where Algorithm 1 decides (lines 4-12), atomically under one lock:

* the worker is busy (and the queue, if any, is full): the request is dropped at once
  (:class:`Dropped`) and the policy hears of it (``on_busy``);
* the worker is free: the policy chooses the request's configuration *now*, at its arrival
  (``select``), and the request is handed to the worker. A request arriving a few µs later
  finds the worker busy and cannot change that choice;
* with ``max_queue > 0`` (like Triton's ``max_queue_size``) a request that finds the worker
  busy but the queue not full waits; it counts as a busy arrival for the policy
  (``on_busy``) and is decided when the worker takes it, from the policy state of that moment.

A request that finds the worker free is run by the thread that admitted it when that thread
waits for it anyway (:meth:`submit`, the HTTP path): a hand-off to the worker thread and back
costs two thread wake-ups under the GIL, about 0.1 ms on the host, which is a third of the
server's whole overhead budget. Requests admitted without waiting (:meth:`admit`, the
in-process bench driver) and queued ones go to the worker thread. Either way one execution
lock keeps the module to one request at a time, in admission order, and the thread that
runs it pins itself to the bundle's serving cores.

The front end that owns a request (the HTTP handler, or the in-process bench driver) times
it whole and reports the part outside the module (:meth:`observe_handling`); with the
module times of no-skip requests, that keeps :class:`ServiceTimeEstimate` (Algorithm 1's
default Δreq) current. Both parts are calibrated when the engine starts.

A new bundle is loaded, verified, smoke-tested and its no-skip time measured beside the
serving one, and swapped in only if all of that succeeds (hot reload). Requests already
admitted finish on the bundle they were decided against.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeskip_runtime.bundle import Bundle, BundleError
from edgeskip_runtime.energy import EnergyMeter
from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.module import CompiledModel, create_device
from edgeskip_runtime.pinning import pin_current_thread
from edgeskip_runtime.policies import OperatingPoint, Policy, PolicySettings, Request, create_policy
from edgeskip_runtime.server.decision_log import DecisionLog
from edgeskip_runtime.server.metrics import ServerMetrics
from edgeskip_runtime.server.oip import InferRequest, Normalization
from edgeskip_runtime.service_time import ServiceTimeEstimate

CALIBRATION_RUNS = 30  # no-skip module runs timed when a bundle is loaded
CALIBRATION_WARMUP = 5
# The module call needs the GIL to return; with CPython's default 5 ms switch interval, a handler
# thread busy parsing a request can hold the worker back for up to 5 ms (measured: a tight module
# loop went from 1.5 to 6.8 ms per call beside a spinning Python thread, 1.4 ms at 0.1 ms).
GIL_SWITCH_INTERVAL_S = 0.0002


class Dropped(Exception):
    """The worker was busy (and the queue, if any, full): the request is not processed."""


@dataclass
class Loaded:
    """Everything that belongs to one bundle; swapped as a whole on reload."""

    bundle: Bundle
    model: CompiledModel
    points: list[OperatingPoint]
    policy: Policy
    policy_name: str
    settings: PolicySettings
    cfg_arrays: dict[int, np.ndarray]  # Pareto index -> the checked cfg array the module takes
    module_samples_ms: list[float]  # the no-skip calibration
    no_skip_scale: dict[int, float]  # Pareto index -> profiled no-skip latency / its profiled latency
    normalization: Normalization  # for UINT8 requests

    @property
    def vmfb_sha256(self) -> str | None:
        return self.bundle.manifest.files.get("model.vmfb")


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
class Job:
    """An admitted request: decided at admission (``point`` set) or, when queued, by the worker."""

    request: InferRequest
    req: Request  # what the policy sees
    loaded: Loaded
    point: OperatingPoint | None = None
    reason: str = ""
    calibration: bool = False
    inline: bool = False  # run by the admitting thread in :meth:`InferenceEngine.wait`
    done: threading.Event | None = None  # set when a job run by the worker finishes (None when inline)
    result: Result | None = None
    error: BaseException | None = None


class InferenceEngine:
    def __init__(self, bundle_path: str | Path, *, policy: str = "algorithm1", settings: PolicySettings | None = None,
                 driver: str = "local-sync", pin: bool = True, max_queue: int = 0,
                 decision_log: DecisionLog | None = None, sla_ms: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_queue < 0:
            raise UsageError(f"max_queue must be >= 0, got {max_queue}", setting="max_queue")
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        self.configured_settings = settings or PolicySettings()  # what reloads override, field by field
        self.driver = driver
        self.pin = pin
        self.max_queue = max_queue
        self.sla_ms = sla_ms
        self.clock = clock
        self.log = decision_log or DecisionLog(None)
        self.bundle_path = Path(bundle_path)
        self.service: ServiceTimeEstimate | None = None
        self._device = create_device(driver)  # one for every bundle this engine loads: reloads do not grow it
        self.current = self._load(self.bundle_path, policy, self.configured_settings)
        self.metrics = ServerMetrics(self.current.model.num_gates,
                                     EnergyMeter(self.current.bundle.manifest.power))
        self.metrics.service = self.service
        self._lock = threading.Lock()  # policy state and admission
        self._in_flight = 0  # admitted and not finished: at most 1 + max_queue (under the lock)
        self._ids = itertools.count(1)
        self._calibration: list[float] | None = None  # handling samples while calibrating
        # True when no front end times requests (in-process use): the worker reports each request's
        # handling itself, from admission to completion.
        self.self_timed = False
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._exec = threading.Lock()  # held by the one request in the module (from admission, when inline)
        self._pinned = threading.local()  # per thread: the bundle path it pinned itself for
        self._worker = threading.Thread(target=self._run, name="edgeskip-inference", daemon=True)
        self._worker.start()

    # -- loading ---------------------------------------------------------------------------
    def _load(self, path: Path, policy_name: str, settings: PolicySettings) -> Loaded:
        bundle = Bundle.open(path)
        model = CompiledModel(bundle, driver=self.driver, pin=False, device=self._device)  # the runner pins itself
        points = OperatingPoint.from_front(bundle.pareto)
        if any(len(p.mask) != model.num_gates for p in points):
            raise BundleError(f"pareto.json of {path} has masks of another length than the module's "
                             f"{model.num_gates} gates")
        cfg_arrays = {p.index: model.check_cfg(p.mask) for p in points}
        probe = np.zeros((1, *model.image_spec.shape[1:]), dtype=np.float32)
        out = model.infer(probe, points[0].mask)  # smoke test before it may serve
        if not np.isfinite(out).all():
            raise BundleError(f"bundle {path} produced non-finite output on a zero image")
        samples = []
        for i in range(CALIBRATION_WARMUP + CALIBRATION_RUNS):  # the no-skip module time on this machine
            t0 = time.perf_counter()
            model.infer_raw(probe, cfg_arrays[0])
            if i >= CALIBRATION_WARMUP:
                samples.append((time.perf_counter() - t0) * 1e3)
        if self.service is None:
            self.service = ServiceTimeEstimate(statistics.median(samples))
            self.service.calibrate_module(samples)
        policy = create_policy(policy_name, points, settings, self.service)
        scale = {p.index: (points[0].latency_ms / p.latency_ms if p.latency_ms > 0 else 1.0) for p in points}
        normalization = Normalization.from_manifest(bundle.manifest, model.image_spec.shape[1])
        return Loaded(bundle, model, points, policy, policy_name, settings, cfg_arrays, samples, scale, normalization)

    def reload(self, path: str | Path | None = None, *, policy: str | None = None,
               settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Load ``path`` (default: the serving path again, e.g. a ``current`` link) with ``policy``
        (default: the serving one) and the configured settings with ``settings`` overriding
        single fields; on any failure the old bundle and policy keep serving.

        Returns what is now loaded (:meth:`describe`)."""
        target = Path(path) if path else self.bundle_path
        effective = self.configured_settings.with_overrides(settings or {})
        new = self._load(target, policy or self.current.policy_name, effective)
        with self._lock:
            assert self.service is not None
            if new.vmfb_sha256 != self.current.vmfb_sha256:  # same module: the online estimate stays
                self.service.calibrate_module(new.module_samples_ms)
            self.current, self.bundle_path = new, target
            self.log.write("reload", None, new.policy_name, new.policy.state(), None, None, f"loaded {target}",
                           arrival=self.clock())
        gc.collect()  # the old module's mapping and context go now, not at some later collection
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """The bundle, policy, settings and service-time estimate now serving."""
        loaded = self.current
        return {"bundle": str(self.bundle_path), "target": loaded.bundle.target_name,
                "vmfb_sha256": loaded.vmfb_sha256, "configurations": len(loaded.points),
                "allowed_configurations": [p.index for p in loaded.policy.points],
                "policy": loaded.policy_name, "settings": loaded.settings.to_dict(),
                "delta_req": self.delta_req(), "service_time": self.service_snapshot()}

    def service_snapshot(self) -> dict[str, Any]:
        assert self.service is not None
        return self.service.snapshot()

    def delta_req(self) -> dict[str, Any] | None:
        """Algorithm 1's Δreq in force and where it comes from (None for policies without one)."""
        policy = self.current.policy
        if not hasattr(policy, "delta_req_s"):
            return None
        return {"ms": round(policy.delta_req_s * 1e3, 4), "source": policy.delta_req_source}

    # -- calibration -----------------------------------------------------------------------
    @contextlib.contextmanager
    def calibration(self, warmup: int = CALIBRATION_WARMUP) -> Iterator[None]:
        """While open, admitted requests run the no-skip configuration, unseen by the policy and the
        metrics; the handling times reported meanwhile (after ``warmup``) become the estimate's."""
        self._calibration = []
        try:
            yield
        finally:
            samples, self._calibration = self._calibration[warmup:], None
            if samples:
                assert self.service is not None
                self.service.calibrate_handling(samples)

    def calibrate_in_process(self, n: int = CALIBRATION_RUNS) -> None:
        """Calibrate the handling of in-process use (no network, ``self_timed``): ``n`` back-to-back requests."""
        self.self_timed = True
        probe = np.zeros((1, *self.current.model.image_spec.shape[1:]), dtype=np.float32)
        with self.calibration():
            for _ in range(n + CALIBRATION_WARMUP):
                self.wait(self.admit(InferRequest(None, probe, 0, None, False)))

    def observe_handling(self, ms: float) -> None:
        """A front end reports one request's time in the server outside the module."""
        if self._calibration is not None:
            self._calibration.append(ms)
        else:
            assert self.service is not None
            self.service.observe_handling(ms)

    # -- serving ---------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.current.bundle.manifest.model

    @property
    def policy_name(self) -> str:
        return self.current.policy_name

    def admit(self, request: InferRequest, arrival: float | None = None, *, inline: bool = False) -> Job:
        """Admit ``request`` and decide its configuration, or raise :class:`Dropped` if the worker is busy.

        With ``inline`` the caller promises to :meth:`wait` for the job at once: if the worker is free
        the job is then run in the caller's thread (``job.inline``), else it goes to the worker."""
        arrival = self.clock() if arrival is None else arrival
        rid = request.id or f"req-{next(self._ids)}"
        req = Request(rid, arrival, request.priority, request.latency_budget_ms, request.label)
        calibrating = self._calibration is not None
        if not calibrating:
            self.metrics.receive()
        with self._lock:
            loaded = self.current
            policy = loaded.policy
            if self._in_flight > self.max_queue:
                reason = policy.on_busy(req, arrival)
                self.metrics.outcome("dropped")
                self.log.write("drop", rid, loaded.policy_name, policy.state() if self.log.enabled else {}, None,
                               None, reason, arrival=arrival)
                raise Dropped("worker busy" + (" and queue full" if self.max_queue else ""))
            busy = self._in_flight > 0
            self._in_flight += 1
            job = Job(request, req, loaded, calibration=calibrating)
            if calibrating:
                job.point, job.reason = loaded.points[0], "calibration"
            elif busy:  # queued: decided when the worker takes it
                reason = policy.on_busy(req, arrival)
                self.log.write("queue", rid, loaded.policy_name, policy.state() if self.log.enabled else {}, None,
                               None, reason, arrival=arrival)
            else:
                self._decide(job)
            # Nothing is in flight, so the execution lock is free: taking it here keeps any request
            # queued behind this one from starting first.
            job.inline = inline and not busy and self._exec.acquire(blocking=False)
            self.metrics.queue_depth = self._in_flight - 1
        if not job.inline:
            job.done = threading.Event()
            self._queue.put(job)
        return job

    def _decide(self, job: Job) -> None:
        """The policy's choice for ``job`` (caller holds the lock)."""
        loaded = job.loaded
        decision = loaded.policy.select(job.req, job.req.arrival)
        job.point, job.reason = loaded.policy.points[decision.config], decision.reason
        self.log.write("process", job.req.id, loaded.policy_name,
                       loaded.policy.state() if self.log.enabled else {}, job.point.index, job.point.n_skipped,
                       decision.reason, arrival=job.req.arrival)

    def wait(self, job: Job) -> Result:
        if job.inline:
            if job.result is None and job.error is None:
                self._execute(job)
        else:
            assert job.done is not None
            job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def submit(self, request: InferRequest) -> Result:
        """Run ``request`` now (in this thread if the worker is free), or raise :class:`Dropped` if it is busy."""
        return self.wait(self.admit(request, inline=True))

    def reject(self, reason: str) -> None:
        """Count a request refused before admission (bad input); the policy does not see it."""
        self.metrics.receive()
        self.metrics.outcome("rejected")
        self.log.write("reject", None, self.current.policy_name, {}, None, None, reason, arrival=self.clock())

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._exec.acquire()
            self._execute(job)

    def _execute(self, job: Job) -> None:
        """Process ``job`` (the caller holds the execution lock) and release everything it held."""
        try:
            job.result = self._process(job)
        except BaseException as e:
            job.error = e
            if not job.calibration:
                self.metrics.outcome("rejected")
        finally:
            self._exec.release()
            with self._lock:
                self._in_flight -= 1
                self.metrics.queue_depth = max(0, self._in_flight - 1)
            if job.done is not None:
                job.done.set()

    def _process(self, job: Job) -> Result:
        loaded = job.loaded
        if self.pin and getattr(self._pinned, "path", None) != loaded.bundle.path:
            pin_current_thread(loaded.bundle.serving_cores)
            self._pinned.path = loaded.bundle.path
        if job.point is None:
            with self._lock:
                self._decide(job)
        point = job.point
        assert point is not None
        images = job.request.images
        t0 = time.perf_counter()
        if images.shape[0] == loaded.model.image_spec.shape[0]:
            logits = loaded.model.infer_raw(images, loaded.cfg_arrays[point.index])
        else:
            logits = loaded.model.infer(images, point.mask)
        latency_ms = (time.perf_counter() - t0) * 1e3
        now = self.clock()
        total_ms = (now - job.req.arrival) * 1e3
        assert self.service is not None
        self.service.observe_module(latency_ms * loaded.no_skip_scale[point.index])
        if self.self_timed:
            self.observe_handling(total_ms - latency_ms)
        if not job.calibration:
            with self._lock:
                loaded.policy.on_done(job.req, now, latency_ms, logits)
                self.log.write("done", job.req.id, loaded.policy_name,
                               loaded.policy.state() if self.log.enabled else {}, point.index, point.n_skipped,
                               f"{latency_ms:.3f} ms in the module", arrival=now)
            budget = job.request.latency_budget_ms if job.request.latency_budget_ms is not None else self.sla_ms
            self.metrics.processed(latency_ms / 1e3, point.index, point.n_skipped,
                                   budget is not None and total_ms > budget)
        return Result(logits, point.index, point.mask, point.n_skipped, latency_ms, total_ms, job.reason)

    def configs(self) -> dict[str, Any]:
        loaded = self.current
        allowed = {p.index for p in loaded.policy.points}
        return {"policy": loaded.policy_name, "settings": loaded.settings.to_dict(),
                "current": self.metrics.current_config, "delta_req": self.delta_req(),
                "service_time": self.service_snapshot(),
                "configs": [{"index": p.index, "mask": list(p.mask), "n_skipped": p.n_skipped,
                             "accuracy": p.accuracy, "latency_ms": p.latency_ms, "latency_p99_ms": p.latency_p99_ms,
                             "allowed": p.index in allowed} for p in loaded.points]}

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the admitted requests, stop the worker, close the decision log last, and release
        the module (IREE objects left for interpreter exit make nanobind report leaks)."""
        self._queue.put(None)  # after every queued job
        self._worker.join(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:  # inline ones, run by front-end threads
            time.sleep(0.001)
        self.log.close()
        self.current = None  # type: ignore[assignment]
        self._device = None
        gc.collect()
