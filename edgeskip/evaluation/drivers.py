"""The two ways ``edgeskip bench`` drives the runtime (Korol et al., Sec. III-B).

* :class:`HTTPDriver`: a running server at a URL, over real HTTP, one sender thread per
  in-flight request, requests sent at their scheduled times. What a client sees.
* :class:`InProcessDriver`: a bundle directory; the same :class:`InferenceEngine` the server
  runs, admitted directly at the scheduled times, no network, no threads per request. This
  measures the controller and the module as the paper did ("measured from within the
  runtime"), without the host's HTTP handling.

Both take the same arrival offsets and images, load a policy with the same settings
overrides, and return the same :class:`Record` list, so the reports can say which path each
number comes from.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgeskip_runtime.errors import UsageError

from edgeskip.evaluation.bench import Inputs, Record
from edgeskip.evaluation.client import OIPClient, energy_between, parse_metrics
from edgeskip.progress import progress_bar


class Driver(Protocol):
    path: str  # "http" or "in-process": where the numbers come from
    model: str
    dataset: str | None

    def configs(self) -> dict[str, Any]: ...

    def load(self, policy: str, settings: dict[str, Any]) -> dict[str, Any]: ...

    def run(self, offsets: list[float], inputs: Inputs, *, priorities: list[int] | None = None,
            budget_ms: float | None = None, send_labels: bool = False, progress: bool = True,
            label: str = "bench") -> tuple[list[Record], float, dict[str, Any]]: ...

    def close(self) -> None: ...


def _outcome(rec: Record, logits: np.ndarray, n_skipped: int, config: int, module_ms: float,
             total_ms: float | None) -> None:
    rec.correct = bool(int(np.argmax(logits[0])) == rec.label)
    rec.n_skipped, rec.config, rec.server_latency_ms, rec.server_total_ms = n_skipped, config, module_ms, total_ms


class HTTPDriver:
    path = "http"

    def __init__(self, url: str, senders: int = 32) -> None:
        self.client = OIPClient(url)
        self.model = self.client.model_name()
        self.dataset = self.client.metadata(self.model)["parameters"].get("dataset")
        self.senders = senders

    def configs(self) -> dict[str, Any]:
        return self.client.get_json(f"/v2/models/{self.model}/configs")

    def load(self, policy: str, settings: dict[str, Any]) -> dict[str, Any]:
        return self.client.load(self.model, {"policy": policy, "settings": settings})

    def run(self, offsets: list[float], inputs: Inputs, *, priorities: list[int] | None = None,
            budget_ms: float | None = None, send_labels: bool = False, progress: bool = True,
            label: str = "bench") -> tuple[list[Record], float, dict[str, Any]]:
        records: list[Record | None] = [None] * len(offsets)
        before = parse_metrics(self.client.metrics())
        start = time.perf_counter() + 0.05
        lock = threading.Lock()

        def send(i: int) -> None:
            sent = time.perf_counter() - start
            t0 = time.perf_counter()
            try:
                status, doc, logits = self.client.infer_uint8(
                    self.model, inputs.images[i], latency_budget_ms=budget_ms,
                    priority=priorities[i] if priorities else None,
                    label=int(inputs.labels[i]) if send_labels else None)
            except Exception as e:
                status, doc, logits = 0, {"error": str(e)}, None
            rec = Record(i, offsets[i], sent, status, (time.perf_counter() - t0) * 1e3, int(inputs.labels[i]))
            if status == 200 and logits is not None:
                p = doc["parameters"]
                _outcome(rec, logits, p["n_skipped"], p["config"], p["latency_ms"], p.get("total_ms"))
            elif status != 503:
                rec.error = str(doc.get("error"))
            with lock:
                records[i] = rec

        with progress_bar(progress) as bar, ThreadPoolExecutor(max_workers=self.senders) as pool:
            task = bar.add_task(label, total=len(offsets), info="")
            for i, off in enumerate(offsets):
                delay = start + off - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send, i).add_done_callback(lambda _: bar.advance(task))
        duration = time.perf_counter() - start
        energy = energy_between(before, parse_metrics(self.client.metrics()))
        return [r for r in records if r is not None], duration, energy

    def close(self) -> None:
        pass


class InProcessDriver:
    path = "in-process"

    def __init__(self, bundle: str | Path, *, pin: bool = False, decision_log: str | Path | None = None) -> None:
        from edgeskip_runtime.server import InferenceEngine
        from edgeskip_runtime.server.decision_log import DecisionLog

        self.engine = InferenceEngine(bundle, policy="static", pin=pin, decision_log=DecisionLog(decision_log))
        self.engine.calibrate_in_process()
        self.model = self.engine.model_name
        self.dataset = self.engine.current.bundle.manifest.dataset

    def configs(self) -> dict[str, Any]:
        return self.engine.configs()

    def load(self, policy: str, settings: dict[str, Any]) -> dict[str, Any]:
        return {"loaded": True, **self.engine.reload(policy=policy, settings=settings)}

    def run(self, offsets: list[float], inputs: Inputs, *, priorities: list[int] | None = None,
            budget_ms: float | None = None, send_labels: bool = False, progress: bool = True,
            label: str = "bench") -> tuple[list[Record], float, dict[str, Any]]:
        from edgeskip_runtime.server.engine import Dropped
        from edgeskip_runtime.server.oip import InferRequest

        engine = self.engine
        images = engine.current.normalization.apply(inputs.images)
        meter = engine.metrics.energy
        joules_before = meter.joules() if meter else 0.0
        admitted: list[tuple[Record, Any]] = []
        records: list[Record] = []
        with progress_bar(progress) as bar:
            task = bar.add_task(label, total=len(offsets), info="")
            start = time.perf_counter() + 0.02
            for i, off in enumerate(offsets):
                delay = start + off - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # releases the GIL: the worker runs meanwhile
                sent = time.perf_counter() - start
                request = InferRequest(f"bench-{i}", images[i : i + 1], priorities[i] if priorities else 0,
                                       budget_ms, False, int(inputs.labels[i]) if send_labels else None)
                rec = Record(i, off, sent, 503, 0.0, int(inputs.labels[i]))
                records.append(rec)
                with contextlib.suppress(Dropped):  # a drop stays recorded as 503
                    admitted.append((rec, engine.admit(request)))
                if i % 64 == 0:
                    bar.update(task, completed=i + 1)
            bar.update(task, completed=len(offsets))
            for rec, job in admitted:
                try:
                    result = engine.wait(job)
                except Exception as e:
                    rec.status, rec.error = 500, str(e)
                    continue
                rec.status, rec.round_trip_ms = 200, result.total_ms
                _outcome(rec, result.logits, result.n_skipped, result.config, result.latency_ms, result.total_ms)
        duration = time.perf_counter() - start
        energy = {"joules": (meter.joules() - joules_before) if meter else 0.0,
                  "estimate": bool(meter.estimate) if meter else True,
                  "source": (meter.source if meter else "none")}
        return records, duration, energy

    def close(self) -> None:
        self.engine.close()


def open_driver(target: str, *, pin: bool = False, decision_log: str | Path | None = None) -> Driver:
    """A bundle directory drives the engine in-process; anything else is a server URL."""
    if Path(target).is_dir():
        return InProcessDriver(target, pin=pin, decision_log=decision_log)
    if "://" not in target and (Path(target).exists() or "/" in target or target.startswith(".")):
        raise UsageError(f"{target} is neither a bundle directory nor a server URL (http://HOST:PORT)")
    return HTTPDriver(target)
