"""Running a workload against a server and measuring what the paper measures (Korol et al.,
Sec. III-B and Table I): processed inferences, drops, online accuracy, latency, SLA
violations, energy and inferences per joule.

Images come from the test split of the bundle's dataset with their labels, so accuracy is
measured online. Requests go out at their scheduled times from a pool of sender threads
(a request that meets a busy worker is answered 503 at once, so senders rarely wait long).
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeskip.evaluation.client import OIPClient, parse_metrics
from edgeskip.progress import progress_bar


@dataclass
class Record:
    index: int
    scheduled_s: float
    sent_s: float
    status: int
    round_trip_ms: float
    label: int
    correct: bool | None = None
    n_skipped: int | None = None
    config: int | None = None
    server_latency_ms: float | None = None
    error: str | None = None


@dataclass
class Inputs:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray


def load_inputs(dataset: str, n: int, seed: int, data_dir: str | None = None) -> Inputs:
    """``n`` test images (cycled if the split is smaller), in a seeded order."""
    from edgeskip.data import load_dataset

    test = load_dataset(dataset, data_dir).test
    order = np.random.default_rng(seed).permutation(len(test))
    idx = np.resize(order, n)
    return Inputs(test.images.numpy()[idx], test.labels.numpy()[idx])


def run_workload(client: OIPClient, model: str, offsets: list[float], inputs: Inputs, *,
                 priorities: list[int] | None = None, budget_ms: float | None = None, sla_ms: float | None = None,
                 senders: int = 32, progress: bool = True, label: str = "bench") -> dict[str, Any]:
    records: list[Record | None] = [None] * len(offsets)
    before = parse_metrics(client.metrics())
    start = time.perf_counter() + 0.05
    lock = threading.Lock()

    def send(i: int) -> None:
        sent = time.perf_counter() - start
        t0 = time.perf_counter()
        try:
            status, doc, logits = client.infer_uint8(model, inputs.images[i], latency_budget_ms=budget_ms,
                                                     priority=priorities[i] if priorities else None)
        except Exception as e:
            status, doc, logits = 0, {"error": str(e)}, None
        rt = (time.perf_counter() - t0) * 1e3
        rec = Record(i, offsets[i], sent, status, rt, int(inputs.labels[i]))
        if status == 200 and logits is not None:
            p = doc["parameters"]
            rec.correct = bool(int(np.argmax(logits[0])) == rec.label)
            rec.n_skipped, rec.config, rec.server_latency_ms = p["n_skipped"], p["config"], p["latency_ms"]
        elif status != 503:
            rec.error = str(doc.get("error"))
        with lock:
            records[i] = rec

    with progress_bar(progress) as bar, ThreadPoolExecutor(max_workers=senders) as pool:
        task = bar.add_task(label, total=len(offsets), info="")
        for i, off in enumerate(offsets):
            delay = start + off - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, i).add_done_callback(lambda _: bar.advance(task))
    duration = time.perf_counter() - start
    after = parse_metrics(client.metrics())
    done = [r for r in records if r is not None]
    return summarize(done, before, after, duration, sla_ms if sla_ms is not None else budget_ms)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summarize(records: list[Record], before: dict[str, float], after: dict[str, float], duration_s: float,
              sla_ms: float | None) -> dict[str, Any]:
    processed = [r for r in records if r.status == 200]
    dropped = [r for r in records if r.status == 503]
    lat = [r.round_trip_ms for r in processed]
    energy = after.get("edgeskip_energy_joules_total", 0.0) - before.get("edgeskip_energy_joules_total", 0.0)
    hist: dict[int, int] = {}
    for r in processed:
        hist[r.n_skipped] = hist.get(r.n_skipped, 0) + 1
    correct = sum(bool(r.correct) for r in processed)
    return {
        "requests": len(records),
        "processed": len(processed),
        "dropped": len(dropped),
        "rejected_or_failed": len(records) - len(processed) - len(dropped),
        "online_accuracy": correct / len(processed) if processed else None,
        "accuracy_over_sent": correct / len(records) if records else None,
        "latency_ms": {"p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99),
                       "mean": statistics.fmean(lat) if lat else None},
        "server_latency_ms_p50": _pct([r.server_latency_ms for r in processed], 0.5),
        "sla_ms": sla_ms,
        "sla_violations": sum(r.round_trip_ms > sla_ms for r in processed) if sla_ms else 0,
        "duration_s": duration_s,
        "energy": {"joules": energy, "estimate": bool(after.get("energy_estimate", 1.0)),
                   "source": "sensor" if after.get("energy_source_is_sensor") else "power model (estimate)"},
        "inferences_per_joule": len(processed) / energy if energy > 0 else None,
        "skipped_histogram": {str(k): v for k, v in sorted(hist.items())},
        "timeline": [{"t": r.sent_s, "status": r.status, "n_skipped": r.n_skipped} for r in records],
        "server_counters": {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after
                            if k.startswith("edgeskip_requests")},
        "records": [asdict(r) for r in records],
    }


def table1_ratios(baseline: dict[str, Any], adaptive: dict[str, Any]) -> dict[str, float | None]:
    """The paper's Table I, relative to the static no-skip baseline ("Original")."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b not in (None, 0) else None

    acc_b, acc_a = baseline["online_accuracy"], adaptive["online_accuracy"]
    return {
        "accuracy_change_points": None if acc_a is None or acc_b is None else 100 * (acc_a - acc_b),
        "processed_inferences_x": ratio(adaptive["processed"], baseline["processed"]),
        "inferences_per_watt_x": ratio(adaptive["inferences_per_joule"], baseline["inferences_per_joule"]),
    }
