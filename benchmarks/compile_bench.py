"""Latency of the compiled gCNN on this machine (batch 1), written as JSON (Korol et al., Sec. II-A.2 and III).

For each model (random-init weights: timing does not depend on training), everything is
compiled for the ``host`` target and measured round-robin in one run, so every ratio compares
like with like on a noisy machine:

(a) gate overhead: gated, all blocks on / plain (no gates), same IREE flags (goal <= 1.02). The
    gated model is compiled as ``edgeskip compile`` does, with the operating points of a front
    specialized (``specialize-configs``; the front here is the configurations of (b)). Also: the
    generic path, which every configuration outside the front takes (no specialization), the same
    without the ``channels-last-gate-boundaries`` pass, and with IREE's default allocator instead of
    the runtime's caching one. These ratios are measured with calls alternating between the two
    models, as the ratio of their 20th-percentile latencies (``paired_ratio``), the median of
    three repeats in the run (each is in the JSON), the rest round-robin;
(b) skip scaling: skipping the N least-index blocks / all on, next to the MAC ratio;
(c) peers: ONNX Runtime 1 thread (plain and gated ONNX) and PyTorch eager 1 thread; goal: gated
    IREE at full depth >= 1.3x faster than ONNX Runtime on the gated ONNX;
(d) config switching: a different configuration every call / the same one (goal <= 1.01), per
    configuration at the 20th percentile, the median of three repeats: between the front's
    configurations (what the server does), and with random configurations outside the front
    mixed in;
(e) drivers: local-task / local-sync, with and without the ``gate-conditions-without-host-syncs``
    pass (the pass should bring local-task down to local-sync);
(f) front ends: the same gated model through the torch-mlir front end (``torch.export`` -> torch-mlir's FX
    importer with edgeskip's ``cond`` handler -> IREE, the default passes and front) against the ONNX one:
    export and compile time, vmfb size, gate overhead (paired, as in (a)), torch-mlir / ONNX latency at
    full depth (paired) and per skip configuration (round-robin), and the largest output difference over
    the configurations. Skipped, and said so in the JSON, where torch-mlir is not installed.

    nice -n 15 python benchmarks/compile_bench.py --models resnet20 --out runs/bench/compile_bench.json
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.module import load_function, to_numpy
from edgeskip_runtime.stats import percentile, time_round_robin

from edgeskip.compile.export import OPSET, export_gated
from edgeskip.compile.iree import CompileLog, compile_mlir, compile_onnx, iree_version
from edgeskip.compile.torch_mlir_export import export_gated_mlir
from edgeskip.compiler_passes import DEFAULT_PIPELINE, get_pass
from edgeskip.gating import GatedModel
from edgeskip.models import create_model
from edgeskip.models.cost import mac_profile
from edgeskip.targets import get_target

try:  # the torch-mlir front end is optional: (f) is skipped without it
    import torch_mlir  # noqa: F401

    TORCH_MLIR = True
except ImportError:
    TORCH_MLIR = False
# No specialization: uniform-config-transients would find no copies, and only add a stream round trip.
GENERIC = tuple(p for p in DEFAULT_PIPELINE if p not in ("specialize-configs", "uniform-config-transients"))
NO_HOST_SYNC_PASS = tuple(p for p in GENERIC if p != "gate-conditions-without-host-syncs")
NO_BOUNDARIES_PASS = tuple(p for p in GENERIC if p != "channels-last-gate-boundaries")


def export_plain(model: torch.nn.Module, shape: list[int]) -> onnx.ModelProto:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (torch.zeros(1, *shape),), dynamo=True, opset_version=OPSET,
                                    verbose=False, input_names=["image"], output_names=["logits"])
    return program.model_proto


def iree_fn(vmfb: Path, driver: str, allocator: str = "caching") -> Callable[..., Any]:
    """The module's entry function on a fresh device, set up exactly as the runtime sets it up."""
    _, fn = load_function(vmfb, "main_graph", driver=driver, allocator=allocator)
    return lambda *args: to_numpy(fn(*args))  # copy back: the result must be complete


def ort_fn(model: onnx.ModelProto) -> Callable[..., Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda *args: session.run(None, dict(zip(names, args, strict=True)))[0]


REPEATS = 3  # the goal ratios are measured this many times in the run; the JSON gives each and the median


def round_robin(variants: dict[str, Callable[[], Any]], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Per variant, ``rounds`` medians of ``per_round`` back-to-back calls, variants interleaved each round."""
    times = time_round_robin(list(variants.values()), repeats=rounds, warmup=3, per_round=per_round)
    return dict(zip(variants, times, strict=True))


def ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a/b (each round measured the two side by side)."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def paired_ratio(a: Callable[[], Any], b: Callable[[], Any], calls: int, quantile: float = 0.2) -> float:
    """time(a) / time(b) at the given low quantile of ``calls`` calls each, alternating a, b / b, a.

    For the ratios that decide a goal. A round-robin round spreads one variant's calls over
    seconds, and this shared machine's speed drifts within that; alternating call by call puts
    both under the same conditions. Noise here only ever adds time (preemption, a neighbour's
    cache traffic), so a low quantile estimates the cost of the work itself far more stably
    than the median (the repeats in the JSON show the spread).
    """
    for _ in range(3):
        a(), b()
    ta, tb = [], []
    for j in range(calls):
        first, second = (a, b) if j % 2 == 0 else (b, a)
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        da, db = (t1 - t0, t2 - t1) if first is a else (t2 - t1, t1 - t0)
        ta.append(da)
        tb.append(db)
    return percentile(ta, quantile) / percentile(tb, quantile)


def _switching_ratio(fn: Callable[..., Any], x: np.ndarray, pool: list[np.ndarray], rounds: int,
                     quantile: float = 0.2) -> float:
    """Cost of a call right after one with another configuration (switching) over the same call repeated at
    once (fixed): per configuration, the low quantile of each over ``rounds``, summed over the pool.

    Each switching call is paired back to back with its repeat, so the two see the same machine; as
    in ``paired_ratio``, the low quantile keeps the noise (which only adds time) out of the ratio.
    """
    switching: list[list[float]] = [[] for _ in pool]
    fixed: list[list[float]] = [[] for _ in pool]
    for _ in range(rounds):
        for i, m in enumerate(pool):  # consecutive pool entries differ, so the first call of each pair switches
            t0 = time.perf_counter()
            fn(x, m)
            t1 = time.perf_counter()
            fn(x, m)
            t2 = time.perf_counter()
            switching[i].append(t1 - t0)
            fixed[i].append(t2 - t1)
    return sum(percentile(t, quantile) for t in switching) / sum(percentile(t, quantile) for t in fixed)


def _repeated(measure: Callable[[], float]) -> list[float]:
    return [measure() for _ in range(REPEATS)]


def _pass_flags(passes: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(f for p in passes for f in get_pass(p).iree_flags))


@dataclass
class Built:
    """One model exported and compiled in every variant the benchmark compares."""

    name: str
    model: torch.nn.Module
    shape: list[int]
    skippable_blocks: int
    export_s: float
    masks: dict[int, np.ndarray]  # n skipped -> the mask skipping the n least-index blocks
    plain_proto: onnx.ModelProto
    gated_proto: onnx.ModelProto
    builds: dict[str, dict[str, Any]]

    @property
    def front(self) -> list[list[int]]:
        return [m.tolist() for m in self.masks.values()]


def build(name: str, work: Path) -> Built:
    """Export ``name`` (random init) plain and gated, and compile every variant for the host."""
    torch.manual_seed(0)
    model = create_model(name, in_channels=3).eval()
    shape = [3, 32, 32]
    host = get_target("host")
    t0 = time.perf_counter()
    gated_proto, b_s = export_gated(model, shape)
    plain_proto = export_plain(model, shape)
    export_s = time.perf_counter() - t0
    # Skip scaling: skip the N least-index blocks. These configurations also stand in for a Pareto front:
    # the gated build specializes them, as `edgeskip compile` does with the front of the bundle.
    ns = list(range(b_s + 1)) if b_s <= 8 else sorted({*range(0, b_s + 1, max(1, b_s // 8)), b_s})
    masks = {n: np.array([0] * n + [1] * (b_s - n), np.int64) for n in ns}
    front = [m.tolist() for m in masks.values()]
    builds: dict[str, dict[str, Any]] = {}
    if TORCH_MLIR:
        d = work / f"{name}-gated-torch-mlir"
        d.mkdir()
        t = time.perf_counter()
        exported = export_gated_mlir(model, shape)
        (d / "model.mlir").write_text(exported.text)
        mlir_export_s = time.perf_counter() - t
        t = time.perf_counter()
        log = CompileLog()
        flags = compile_mlir(d / "model.mlir", host, d / "model.vmfb", d, b_s, log=log, specialize=front,
                             passes_at_export=[p["name"] for p in exported.passes])
        builds["gated-torch-mlir"] = {"vmfb": d / "model.vmfb", "flags": flags, "export_s": round(mlir_export_s, 2),
                                      "compile_s": round(time.perf_counter() - t, 2), "passes": log.passes(),
                                      "specialized_configs": len(front)}
    for label, proto, passes in [("plain", plain_proto, ()),
                                 ("gated", gated_proto, DEFAULT_PIPELINE),
                                 ("gated-generic", gated_proto, GENERIC),
                                 ("gated-no-host-sync-pass", gated_proto, NO_HOST_SYNC_PASS),
                                 ("gated-no-gate-boundaries-pass", gated_proto, NO_BOUNDARIES_PASS)]:
        d = work / f"{name}-{label}"
        d.mkdir()
        t = time.perf_counter()
        log = CompileLog()
        # The plain model runs no pass but gets the same IREE flags (the channels-last preprocessing).
        flags = compile_onnx(onnx.ModelProto.FromString(proto.SerializeToString()), host, d / "model.vmfb", d,
                             b_s, passes=passes, log=log, specialize=front if label == "gated" else (),
                             extra_flags=() if label != "plain" else _pass_flags(DEFAULT_PIPELINE))
        builds[label] = {"vmfb": d / "model.vmfb", "flags": flags, "compile_s": round(time.perf_counter() - t, 2),
                         "passes": log.passes(), "specialized_configs": len(front) if label == "gated" else 0}
    return Built(name, model, shape, b_s, export_s, masks, plain_proto, gated_proto, builds)


@dataclass
class Measured:
    samples: dict[str, list[float]]  # variant -> per-round latency (ms), round-robin
    overhead_runs: dict[str, list[float]]  # goal ratio -> its REPEATS paired measurements
    switch_runs: list[float]
    mixed_runs: list[float]
    configs: int  # in the switching pool


def measure(b: Built, rounds: int, per_round: int) -> Measured:
    """Time every variant of ``b`` side by side: round-robin medians and the paired goal ratios."""
    x = np.random.default_rng(0).standard_normal((1, *b.shape)).astype(np.float32)
    xt = torch.from_numpy(x)
    on = np.ones(b.skippable_blocks, np.int64)
    fns = {label: {d: iree_fn(v["vmfb"], d) for d in ("local-sync", "local-task")} for label, v in b.builds.items()}
    default_alloc = {label: iree_fn(b.builds[label]["vmfb"], "local-sync", "default") for label in ("plain", "gated")}
    torch.set_num_threads(1)
    gated_eager = GatedModel(b.model).eval()
    ort_plain, ort_gated = ort_fn(b.plain_proto), ort_fn(b.gated_proto)
    variants: dict[str, Callable[[], Any]] = {
        "iree_plain_sync": lambda: fns["plain"]["local-sync"](x),
        "iree_plain_task": lambda: fns["plain"]["local-task"](x),
        "iree_gated_sync": lambda: fns["gated"]["local-sync"](x, on),
        "iree_gated_task": lambda: fns["gated"]["local-task"](x, on),
        **({"iree_gated_torch_mlir_sync": lambda: fns["gated-torch-mlir"]["local-sync"](x, on)}
           if "gated-torch-mlir" in fns else {}),
        "iree_gated_generic_sync": lambda: fns["gated-generic"]["local-sync"](x, on),
        "iree_gated_generic_task": lambda: fns["gated-generic"]["local-task"](x, on),
        "iree_gated_nopass_sync": lambda: fns["gated-no-host-sync-pass"]["local-sync"](x, on),
        "iree_gated_nopass_task": lambda: fns["gated-no-host-sync-pass"]["local-task"](x, on),
        "iree_gated_noboundaries_sync": lambda: fns["gated-no-gate-boundaries-pass"]["local-sync"](x, on),
        "iree_plain_sync_default_alloc": lambda: default_alloc["plain"](x),
        "iree_gated_sync_default_alloc": lambda: default_alloc["gated"](x, on),
        "ort_plain_1t": lambda: ort_plain(x),
        "ort_gated_1t": lambda: ort_gated(x, on),
    }
    with torch.no_grad():
        variants["torch_plain_1t"] = lambda: b.model(xt)
        variants["torch_gated_1t"] = lambda: gated_eager(xt, torch.from_numpy(on))
        for n, m in b.masks.items():
            if n:
                variants[f"iree_gated_sync_skip{n}"] = lambda m=m: fns["gated"]["local-sync"](x, m)
                if "gated-torch-mlir" in fns:
                    variants[f"iree_gated_torch_mlir_sync_skip{n}"] = \
                        lambda m=m: fns["gated-torch-mlir"]["local-sync"](x, m)
        # Config switching: same multiset of configurations, each call a new one vs each call a repeat.
        # The server switches between the front's operating points; the mixed pool alternates them with
        # configurations outside the front (the generic path), the worst case for the allocator's cache.
        rng = random.Random(0)
        pool = list(b.masks.values())
        mixed = [m for pair in zip(pool, [np.array([rng.randint(0, 1) for _ in range(b.skippable_blocks)], np.int64)
                                          for _ in pool], strict=True) for m in pair]
        samples = round_robin(variants, rounds, per_round)
        switch_runs = _repeated(lambda: _switching_ratio(fns["gated"]["local-sync"], x, pool, 3 * rounds))
        mixed_runs = _repeated(lambda: _switching_ratio(fns["gated"]["local-sync"], x, mixed, 3 * rounds))
        pairs = {
            "gated_all_on_over_plain": ("iree_gated_sync", "iree_plain_sync"),
            "generic_path_over_plain": ("iree_gated_generic_sync", "iree_plain_sync"),
            "generic_without_gate_boundaries_pass": ("iree_gated_noboundaries_sync", "iree_plain_sync"),
            "with_default_allocator": ("iree_gated_sync_default_alloc", "iree_plain_sync_default_alloc"),
        }
        if "gated-torch-mlir" in fns:
            pairs["torch_mlir_gated_all_on_over_plain"] = ("iree_gated_torch_mlir_sync", "iree_plain_sync")
            pairs["torch_mlir_over_onnx_all_on"] = ("iree_gated_torch_mlir_sync", "iree_gated_sync")
        overhead_runs = {key: _repeated(lambda a=a, c=c: paired_ratio(variants[a], variants[c], 30 * rounds))
                         for key, (a, c) in pairs.items()}
    return Measured(samples, overhead_runs, switch_runs, mixed_runs, len(pool))


def report(b: Built, m: Measured) -> dict[str, Any]:
    """The JSON entry of one model: each goal ratio with its goal, and the supporting figures."""
    samples = m.samples
    overhead = {key: statistics.median(runs) for key, runs in m.overhead_runs.items()}
    switch_ratio, mixed_ratio = statistics.median(m.switch_runs), statistics.median(m.mixed_runs)
    macs = mac_profile(b.model, b.shape)
    med = {k: round(statistics.median(v), 4) for k, v in samples.items()}
    skip = []
    for n, mask in b.masks.items():
        key = "iree_gated_sync" if n == 0 else f"iree_gated_sync_skip{n}"
        skip.append({"n_skipped": n, "latency_ms": med[key],
                     "latency_ratio": round(ratio(samples, key, "iree_gated_sync"), 4) if n else 1.0,
                     "mac_ratio": round(macs.macs(mask.tolist()) / macs.total, 4)})
    gate_overhead = overhead["gated_all_on_over_plain"]
    vs_ort = ratio(samples, "ort_gated_1t", "iree_gated_sync")
    return {
        "model": b.name, "skippable_blocks": b.skippable_blocks, "export_s": round(b.export_s, 1),
        "builds": {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
                   for k, v in b.builds.items()},
        "median_ms": med,
        "a_gate_overhead": {
            "gated_all_on_over_plain": round(gate_overhead, 4), "goal": "<= 1.02", "met": gate_overhead <= 1.02,
            "specialized_configs": len(b.masks),
            "measured": f"alternating calls, ratio of the 20th-percentile latencies (paired_ratio), "
                        f"median of {REPEATS} repeats",
            "repeats": [round(r, 4) for r in m.overhead_runs["gated_all_on_over_plain"]],
            # A configuration outside the front runs the generic gated network (one scf.if per gate):
            "generic_path_over_plain": round(overhead["generic_path_over_plain"], 4),
            # The generic path without the gate-boundaries pass, and the front path with IREE's default allocator:
            "generic_without_gate_boundaries_pass": round(overhead["generic_without_gate_boundaries_pass"], 4),
            "with_default_allocator": round(overhead["with_default_allocator"], 4),
        },
        "b_skip_scaling": skip,
        "c_peers": {"ort_gated_over_iree_gated": round(vs_ort, 3), "goal": ">= 1.3", "met": vs_ort >= 1.3,
                    "ort_plain_over_iree_plain": round(ratio(samples, "ort_plain_1t", "iree_plain_sync"), 3),
                    "torch_gated_over_iree_gated": round(ratio(samples, "torch_gated_1t", "iree_gated_sync"), 3),
                    "torch_plain_over_iree_plain": round(ratio(samples, "torch_plain_1t", "iree_plain_sync"), 3)},
        "d_config_switching": {"switching_over_fixed": round(switch_ratio, 4), "goal": "<= 1.01",
                               "met": switch_ratio <= 1.01, "configs": m.configs,
                               "repeats": [round(r, 4) for r in m.switch_runs],
                               "with_configs_outside_the_front": round(mixed_ratio, 4)},
        "f_front_ends": _front_ends(b, m, samples, overhead),
        "e_drivers": {
            "gated_task_over_sync_with_pass": round(ratio(samples, "iree_gated_task", "iree_gated_sync"), 3),
            "generic_task_over_sync_with_pass": round(ratio(samples, "iree_gated_generic_task",
                                                            "iree_gated_generic_sync"), 3),
            "gated_task_over_sync_without_pass": round(ratio(samples, "iree_gated_nopass_task",
                                                             "iree_gated_nopass_sync"), 3),
            "plain_task_over_sync": round(ratio(samples, "iree_plain_task", "iree_plain_sync"), 3),
        },
    }


def _front_ends(b: Built, m: Measured, samples: dict[str, list[float]], overhead: dict[str, float]) -> dict[str, Any]:
    """(f): the torch-mlir front end against the ONNX one, on the same model, passes and front."""
    if "gated-torch-mlir" not in b.builds:
        return {"skipped": "torch-mlir is not installed (pip install --no-deps torch-mlir==20261001)"}
    onnx_b, tm_b = b.builds["gated"], b.builds["gated-torch-mlir"]
    ours = iree_fn(tm_b["vmfb"], "local-sync")
    theirs = iree_fn(onnx_b["vmfb"], "local-sync")
    x = np.random.default_rng(1).standard_normal((1, *b.shape)).astype(np.float32)
    rng = np.random.default_rng(2)
    masks = [*b.masks.values(), *(rng.integers(0, 2, b.skippable_blocks).astype(np.int64) for _ in range(8))]
    diff = max(float(np.abs(ours(x, mk) - theirs(x, mk)).max()) for mk in masks)
    per_config = [{"n_skipped": n, "torch_mlir_over_onnx": round(ratio(
        samples, "iree_gated_torch_mlir_sync" + (f"_skip{n}" if n else ""),
        "iree_gated_sync" + (f"_skip{n}" if n else "")), 4)} for n in b.masks]
    return {
        "export_s": {"onnx": round(b.export_s, 2), "torch_mlir": tm_b["export_s"]},
        "compile_s": {"onnx": onnx_b["compile_s"], "torch_mlir": tm_b["compile_s"]},
        "vmfb_bytes": {"onnx": Path(onnx_b["vmfb"]).stat().st_size, "torch_mlir": Path(tm_b["vmfb"]).stat().st_size},
        "gate_overhead": {"onnx": round(overhead["gated_all_on_over_plain"], 4),
                          "torch_mlir": round(overhead["torch_mlir_gated_all_on_over_plain"], 4),
                          "torch_mlir_repeats": [round(r, 4) for r in
                                                 m.overhead_runs["torch_mlir_gated_all_on_over_plain"]]},
        "torch_mlir_over_onnx_all_on": round(overhead["torch_mlir_over_onnx_all_on"], 4),
        "per_skip_config": per_config,
        "max_abs_difference": diff, "compared_configs": len(masks), "passes": tm_b["passes"],
    }


def bench_model(name: str, rounds: int, per_round: int, work: Path) -> dict[str, Any]:
    built = build(name, work)
    return report(built, measure(built, rounds, per_round))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet20,resnet110")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/compile_bench.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results.append(bench_model(name, args.rounds, args.per_round, Path(tmp)))
            print(f"{name}: done")
    doc = {"schema": "edgeskip.compile_bench/1", "machine": platform.machine(), "processor": platform.processor(),
           "allocator": "caching (the runtime's default) unless a key says otherwise",
           "iree_version": iree_version(), "torch": torch.__version__, "rounds": args.rounds,
           "per_round": args.per_round, "models": results}
    write_json(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
