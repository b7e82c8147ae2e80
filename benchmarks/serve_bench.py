"""Server benchmark (the README's "Benchmarks"), written as JSON:

* server overhead per request: client round trip minus time in the compiled module, p50/p99,
  for JSON and binary requests, measured back to back (no overlap, so no drops);
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
from pathlib import Path

import numpy as np
from edgeskip_runtime import Bundle
from edgeskip_runtime.policies import OperatingPoint, PolicySettings, Request, create_policy, list_policies
from edgeskip_runtime.stats import percentile

from edgeskip.atomic import write_json
from edgeskip.evaluation.client import OIPClient
from edgeskip.evaluation.local_server import LocalServer
from edgeskip.evaluation.runner import BenchOptions, run_bench


def overhead(client: OIPClient, model: str, shape: tuple[int, ...], n: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, shape).astype(np.uint8)
    fp32 = rng.standard_normal((1, *shape)).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "image", "shape": list(fp32.shape), "datatype": "FP32",
                                   "data": fp32.ravel().tolist()}]}).encode()
    out: dict[str, list[float]] = {"binary_uint8": [], "json_fp32": []}
    for i in range(n + 10):
        for kind in out:
            t0 = time.perf_counter()
            if kind == "binary_uint8":
                status, doc, _ = client.infer_uint8(model, pixels)
            else:
                status, _, raw = client.request("POST", f"/v2/models/{model}/infer", body)
                doc = json.loads(raw)
            rt = (time.perf_counter() - t0) * 1e3
            if status == 200 and i >= 10:  # first 10: warm-up
                out[kind].append(rt - doc["parameters"]["latency_ms"])
    return {k: {"p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99), "mean_ms": statistics.fmean(v),
                "n": len(v)} for k, v in out.items()}


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
    ap.add_argument("--requests", type=int, default=300, help="overhead samples per form, and paper-workload size")
    ap.add_argument("--period-factor", type=float, default=0.8, help="x the no-skip service time (overload)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/serve_bench.json"))
    args = ap.parse_args()
    bundle = Bundle.open(args.bundle)
    points = OperatingPoint.from_pareto(bundle.pareto)
    result = {"benchmark": "edgeskip.serve_bench/1", "machine": platform.platform(), "bundle": str(args.bundle),
              "policy_decision_cost": decision_cost(points)}
    with LocalServer(args.bundle, "--no-pin") as server:
        client = OIPClient(server.url)
        result["server_overhead"] = overhead(client, server.model, tuple(bundle.input("image").shape[1:]),
                                             args.requests)
        doc = run_bench(server.url, BenchOptions(workload="paper", requests=args.requests, compare=True,
                                                 period_factor=args.period_factor, out=args.out.parent / "serve_bench",
                                                 progress=False))
    result["paper_workload"] = {"period_ms": doc["period_ms"], "requests": doc["requests"],
                                "table1": doc["table1"],
                                "runs": {k: {x: v[x] for x in ("processed", "dropped", "online_accuracy",
                                                               "inferences_per_joule")}
                                         for k, v in doc["runs"].items()}}
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
