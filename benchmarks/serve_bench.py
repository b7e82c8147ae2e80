"""Server benchmark (the README's "Benchmarks"), written as JSON:

* server overhead per request: client round trip minus time in the compiled module, for
  binary and JSON requests from edgeskip's client, binary requests from ``tritonclient``
  (a standard KServe v2 client, when installed), and beside them the in-process engine
  (``submit`` minus module: admission, policy and bookkeeping, no HTTP). The binary form is
  sent twice: by a client that blocks for the answer, as most do, and by one that busy-polls
  its socket (``binary_uint8_busy_poll``). A blocked client's CPU goes idle for the length of
  the module run, and on this VM its wake-up and cold caches add 0.05 to 0.2 ms that vary
  with the machine's phase; the polling client's figure is the server's cost on the wire,
  and it is the one held to the 0.3 ms goal (``meets_target``). Requests go back to
  back (no overlap, so no drops), the forms taking turns in rounds (see :func:`overhead`);
  p50/p90/p99/mean per form, and the server's own
  handling estimate (first byte read to last byte written, minus module) from ``/configs``;
* policy decision cost: ns per ``select`` (and ``on_busy``) of every registered policy;
* the ``--compare`` Table I ratios under the paper workload.

    python benchmarks/serve_bench.py BUNDLE/ --out runs/bench/serve_bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from edgeskip_runtime import Bundle
from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.policies import OperatingPoint, PolicySettings, Request, create_policy, list_policies
from edgeskip_runtime.server import InferenceEngine
from edgeskip_runtime.server.oip import InferRequest
from edgeskip_runtime.stats import percentile

from edgeskip.evaluation.client import OIPClient
from edgeskip.evaluation.local_server import LocalServer
from edgeskip.evaluation.runner import BenchOptions, run_bench

OVERHEAD_TARGET_MS = 0.3  # binary round trip minus module, p50, on the 2-core host (README, "Benchmarks")
WARMUP = 50
# The busy-polling client spins this long for each answer before it blocks (longer than any module run here).
BUSY_POLL_S = 0.05

# One request of a form: returns (round trip ms, module ms).
Sender = Callable[[], tuple[float, float]]


def _timed(call: Callable[[], float]) -> tuple[float, float]:
    t0 = time.perf_counter()
    module_ms = call()
    return (time.perf_counter() - t0) * 1e3, module_ms


def http_senders(url: str, model: str, shape: tuple[int, ...]) -> dict[str, Sender]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, shape).astype(np.uint8)
    fp32 = rng.standard_normal((1, *shape)).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "image", "shape": list(fp32.shape), "datatype": "FP32",
                                   "data": fp32.ravel().tolist()}]}).encode()
    client = OIPClient(url)
    polling = OIPClient(url, busy_poll_s=BUSY_POLL_S)

    def binary(c: OIPClient = client) -> float:
        status, doc, _ = c.infer_uint8(model, pixels)
        if status != 200:
            raise RuntimeError(f"binary request answered {status}: {doc}")
        return float(doc["parameters"]["latency_ms"])

    def json_form() -> float:
        status, _, raw = client.request("POST", f"/v2/models/{model}/infer", body)
        if status != 200:
            raise RuntimeError(f"JSON request answered {status}: {raw[:200]!r}")
        return float(json.loads(raw)["parameters"]["latency_ms"])

    senders: dict[str, Sender] = {"binary_uint8": lambda: _timed(binary),
                                  "binary_uint8_busy_poll": lambda: _timed(lambda: binary(polling)),
                                  "json_fp32": lambda: _timed(json_form)}
    try:
        import tritonclient.http as httpclient
    except ImportError:
        return senders
    triton = httpclient.InferenceServerClient(url.split("://", 1)[1])
    image = httpclient.InferInput("image", [1, *shape], "UINT8")
    image.set_data_from_numpy(pixels[None], binary_data=True)
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=True)]

    def tritonclient_binary() -> float:
        return float(triton.infer(model, [image], outputs=outputs).get_response()["parameters"]["latency_ms"])

    senders["tritonclient_binary_uint8"] = lambda: _timed(tritonclient_binary)
    return senders


def in_process_sender(bundle: Path) -> tuple[InferenceEngine, Sender]:
    engine = InferenceEngine(bundle, pin=False)
    image = np.zeros((1, *engine.current.model.image_spec.shape[1:]), np.float32)

    def send() -> tuple[float, float]:
        t0 = time.perf_counter()
        result = engine.submit(InferRequest(None, image, 0, None, False))
        return (time.perf_counter() - t0) * 1e3, result.latency_ms

    return engine, send


def overhead(senders: dict[str, Sender], n: int, block: int = 100) -> dict[str, dict[str, float]]:
    """Round trip minus module time per form: rounds of ``block`` back-to-back requests of each form
    in turn, so that a slow spell of the machine hits every form alike, while each form's own code
    stays as warm as it is for a client that sends only that form."""
    samples: dict[str, list[float]] = {k: [] for k in senders}
    for _ in range(max(1, round(n / block))):
        for kind, send in senders.items():
            for i in range(block + WARMUP // 5):
                rt, module_ms = send()
                if i >= WARMUP // 5:
                    samples[kind].append(rt - module_ms)
    return {k: {"p50_ms": percentile(v, 0.5), "p90_ms": percentile(v, 0.9), "p99_ms": percentile(v, 0.99),
                "mean_ms": statistics.fmean(v), "n": len(v)} for k, v in samples.items()}


def decision_cost(points: list[OperatingPoint], n: int = 20000) -> dict[str, dict[str, float]]:
    out = {}
    for name in list_policies():
        policy = create_policy(name, points, PolicySettings(tier_max_skipped={1: 1}))
        t = 0.0
        t0 = time.perf_counter_ns()
        for i in range(n):
            t += 0.001
            r = Request(str(i), t, i % 3, 5.0)
            if i % 4 == 0:
                policy.on_busy(r, t)
            policy.select(r, t)
            policy.on_done(r, t, 1.0)
        out[name] = {"ns_per_request": (time.perf_counter_ns() - t0) / n}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--requests", type=int, default=300, help="paper-workload size")
    ap.add_argument("--overhead-requests", type=int, default=2000, help="overhead samples per form")
    ap.add_argument("--period-factor", type=float, default=0.8, help="x the no-skip service time (overload)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/serve_bench.json"))
    args = ap.parse_args()
    bundle = Bundle.open(args.bundle)
    points = OperatingPoint.from_front(bundle.pareto)
    result = {"benchmark": "edgeskip.serve_bench/2", "machine": platform.platform(), "bundle": str(args.bundle),
              "policy_decision_cost": decision_cost(points)}
    engine, in_process = in_process_sender(args.bundle)
    try:
        with LocalServer(args.bundle, "--no-pin") as server:
            shape = tuple(bundle.input("image").shape[1:])
            senders = {**http_senders(server.url, server.model, shape), "in_process": in_process}
            table = overhead(senders, args.overhead_requests)
            handling = OIPClient(server.url).get_json(f"/v2/models/{server.model}/configs")["service_time"]
            polled = table["binary_uint8_busy_poll"]["p50_ms"]
            result["server_overhead"] = {
                **table, "server_handling_estimate_ms": handling["handling_ms"],
                "module_ms": handling["module_ms"],
                "client_wakeup_p50_ms": table["binary_uint8"]["p50_ms"] - polled,
                "http_minus_in_process_p50_ms": polled - table["in_process"]["p50_ms"],
                "target_p50_ms": OVERHEAD_TARGET_MS, "target_form": "binary_uint8_busy_poll",
                "meets_target": polled <= OVERHEAD_TARGET_MS}
            doc = run_bench(server.url, BenchOptions(workload="paper", requests=args.requests, compare=True,
                                                     period_factor=args.period_factor,
                                                     out=args.out.parent / "serve_bench", progress=False))
    finally:
        engine.close()
    result["paper_workload"] = {"period_ms": doc["period_ms"], "requests": doc["requests"],
                                "table1": doc["table1"],
                                "runs": {k: {x: v[x] for x in ("processed", "dropped", "online_accuracy",
                                                               "inferences_per_joule")}
                                         for k, v in doc["runs"].items()}}
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
