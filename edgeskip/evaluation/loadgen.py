"""The ``loadgen`` workload: an MLPerf Server-scenario run driven by MLPerf LoadGen
(``mlcommons-loadgen``), the benchmark standard the paper's drop rule follows (Sec. II-B, [21]).

LoadGen issues queries with Poisson arrivals at ``target_qps``; each is sent to the server
as one request. A dropped request (503) completes with an empty response, so LoadGen still
times it. After the run, LoadGen's own summary gives the tail-latency verdict
(``Result is : VALID`` / ``INVALID``) against ``target_latency_ms`` at the 99th percentile.
"""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from edgeskip_runtime.errors import UsageError

from edgeskip.evaluation.bench import Inputs, Record, summarize
from edgeskip.evaluation.client import OIPClient, energy_between, parse_metrics


def run_loadgen(client: OIPClient, model: str, inputs: Inputs, *, target_qps: float, target_latency_ms: float,
                min_queries: int, log_dir: Path | None = None, senders: int = 32) -> dict[str, Any]:
    try:
        import mlperf_loadgen as lg
    except ImportError as e:
        raise UsageError("the loadgen workload needs MLPerf LoadGen: pip install mlcommons-loadgen") from e
    records: list[Record] = []
    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=senders)
    before = parse_metrics(client.metrics())
    start = time.perf_counter()

    def one(sample) -> None:
        i = sample.index % len(inputs.labels)
        sent = time.perf_counter() - start
        t0 = time.perf_counter()
        try:
            status, doc, logits = client.infer_uint8(model, inputs.images[i])
        except Exception as e:
            status, doc, logits = 0, {"error": str(e)}, None
        rec = Record(len(records), sent, sent, status, (time.perf_counter() - t0) * 1e3, int(inputs.labels[i]))
        if status == 200 and logits is not None:
            p = doc["parameters"]
            rec.correct = bool(int(np.argmax(logits[0])) == rec.label)
            rec.n_skipped, rec.config, rec.server_latency_ms = p["n_skipped"], p["config"], p["latency_ms"]
        with lock:
            records.append(rec)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    def issue(samples) -> None:
        for s in samples:
            pool.submit(one, s)

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = target_qps
    settings.server_target_latency_ns = int(target_latency_ms * 1e6)
    settings.min_query_count = min_queries
    settings.max_query_count = min_queries
    settings.min_duration_ms = 0
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="loadgen-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(inputs.labels), len(inputs.labels), lambda _: None, lambda _: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    finally:
        pool.shutdown(wait=True)
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    duration = time.perf_counter() - start
    summary = (log_dir / "mlperf_log_summary.txt").read_text() if (log_dir / "mlperf_log_summary.txt").exists() else ""
    verdict = next((line.split(":", 1)[1].strip() for line in summary.splitlines() if line.startswith("Result is")),
                   "unknown")
    result = summarize(records, duration, target_latency_ms, energy_between(before, parse_metrics(client.metrics())))
    result["loadgen"] = {"verdict": verdict, "target_qps": target_qps, "target_latency_ms": target_latency_ms,
                         "log_dir": str(log_dir)}
    return result
