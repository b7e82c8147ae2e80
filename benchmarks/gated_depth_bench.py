"""Gated Depth networks compiled with IREE (Darzi et al., seed 003, Sec. 3 and 6.1; Korol et al., Sec. II-A.2):
the gate overhead of a Gated Depth bundle and the two lowerings of its skip-aware batch norm, written as JSON.

For each model (random-init weights, the skip-aware batch norms' "off" sets perturbed so that the choice
matters; timing does not depend on training), everything is compiled for the ``host`` target and timed
side by side in one run, with the paired, alternating-call ratio of ``compile_bench.py``:

(a) gate overhead: the bundle as ``edgeskip compile`` builds it (default passes, every one of the 2^N_r
    configurations specialized, as they all are on a Gated Depth front), all sub-paths on / the plain
    network (no gates, the "on" batch norms), same IREE flags; goal <= 1.02, as for stochastic depth.
    Also the generic (unspecialized) path, which is what a configuration outside a front runs.
(b) skip-aware batch norm, ``select`` (a ``Where`` between the folded parameter sets; what the product
    exports) against ``branch`` (an ``If`` between the two batch norms): both compiled without
    specialization, with the same passes (``verify-gates-mlir`` left out, since it allows one ``If`` per
    gate), per configuration. Ratio > 1: the branch is slower.
(c) every variant's outputs against the eager model in every configuration (max |difference| over the
    largest |logit|: random-weight deep networks have large logits).

    nice -n 15 python benchmarks/gated_depth_bench.py --models resnet20 --out runs/bench/gated_depth_bench.json
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from compile_bench import GENERIC, REPEATS, _pass_flags, export_plain, iree_fn, paired_ratio, round_robin
from edgeskip_runtime.atomic import write_json

from edgeskip.compile.export import export_gated
from edgeskip.compile.iree import CompileLog, compile_onnx, iree_version
from edgeskip.compiler_passes import DEFAULT_PIPELINE
from edgeskip.gating import GatedModel
from edgeskip.models import create_model
from edgeskip.models.cost import mac_profile
from edgeskip.models.gated_depth import SkipAwareBatchNorm2d, set_bn_lowering, to_gated_depth
from edgeskip.targets import get_target

# The follower Ifs of the branch lowering are not gates: leave out the check that counts one If per gate.
COMPARED = tuple(p for p in GENERIC if p != "verify-gates-mlir")
SHAPE = [3, 32, 32]


def gated_depth_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = to_gated_depth(create_model(name, in_channels=SHAPE[0])).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SkipAwareBatchNorm2d):  # distinct "off" statistics, as training leaves them
                m.off.running_mean.normal_(0.0, 0.1)
                m.off.running_var.uniform_(0.5, 1.5)
                m.off.weight.mul_(1.2)
    return model


def build(name: str, work: Path) -> dict[str, Any]:
    model = gated_depth_model(name)
    host = get_target("host")
    configs = [list(c) for c in itertools.product([0, 1], repeat=len(model.skippable_block_names()))]
    protos = {"plain": (export_plain(model, SHAPE), (), (), _pass_flags(DEFAULT_PIPELINE))}
    set_bn_lowering(model, "select")
    select_proto, n_r = export_gated(model, SHAPE)
    protos["bundle"] = (select_proto, DEFAULT_PIPELINE, configs, ())
    protos["generic-select"] = (select_proto, COMPARED, (), ())
    set_bn_lowering(model, "branch")
    protos["generic-branch"] = (export_gated(model, SHAPE)[0], COMPARED, (), ())
    set_bn_lowering(model, "select")
    builds = {}
    for label, (proto, passes, specialize, extra) in protos.items():
        d = work / f"{name}-{label}"
        d.mkdir()
        t = time.perf_counter()
        compile_onnx(onnx.ModelProto.FromString(proto.SerializeToString()), host, d / "model.vmfb", d, n_r,
                     passes=passes, log=CompileLog(), specialize=specialize, extra_flags=extra)
        builds[label] = {"vmfb": d / "model.vmfb", "compile_s": round(time.perf_counter() - t, 2),
                         "if_nodes": sum(n.op_type == "If" for n in proto.graph.node),
                         "where_nodes": sum(n.op_type == "Where" for n in proto.graph.node),
                         "passes": list(passes), "specialized_configs": len(specialize)}
    return {"model": model, "configs": configs, "builds": builds}


def bench_model(name: str, rounds: int, work: Path) -> dict[str, Any]:
    b = build(name, work)
    model, configs = b["model"], b["configs"]
    fns = {label: iree_fn(v["vmfb"], "local-sync") for label, v in b["builds"].items()}
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype(np.float32)
    cfgs = [np.array(c, np.int64) for c in configs]
    on = cfgs[-1]
    eager = GatedModel(model).eval()
    with torch.no_grad():
        reference = [eager(torch.from_numpy(x), torch.from_numpy(c)).numpy() for c in cfgs]
    # Random-weight deep ResNets have large logits: the error is relative to the largest reference logit.
    scale = max(float(np.abs(r).max()) for r in reference)
    errors = {label: max(float(np.abs(fns[label](x, c) - r).max()) for c, r in zip(cfgs, reference, strict=True))
              / scale for label in ("bundle", "generic-select", "generic-branch")}
    errors["plain"] = float(np.abs(fns["plain"](x) - reference[-1]).max()) / scale
    overhead = {key: [paired_ratio(lambda a=a: fns[a](x, on), lambda: fns["plain"](x), 30 * rounds)
                      for _ in range(REPEATS)] for key, a in (("bundle_all_on_over_plain", "bundle"),
                                                              ("generic_all_on_over_plain", "generic-select"))}
    per_config = []
    macs = mac_profile(model, SHAPE)
    for c in cfgs:
        runs = [paired_ratio(lambda c=c: fns["generic-branch"](x, c), lambda c=c: fns["generic-select"](x, c),
                             10 * rounds) for _ in range(REPEATS)]
        per_config.append({"cfg": c.tolist(), "branch_over_select": round(statistics.median(runs), 4),
                           "repeats": [round(r, 4) for r in runs]})
    torch.set_num_threads(1)
    variants = {f"{label}{c.tolist()}": (lambda f=fns[label], c=c: f(x, c))
                for label in ("bundle", "generic-select", "generic-branch") for c in cfgs}
    variants["plain"] = lambda: fns["plain"](x)
    samples = round_robin(variants, rounds, 10)
    med = {k: round(statistics.median(v), 4) for k, v in samples.items()}
    gate = statistics.median(overhead["bundle_all_on_over_plain"])
    branch = statistics.median(p["branch_over_select"] for p in per_config)
    sub_path_blocks = [len(getattr(model, n.split(".")[0]).gated) for n in model.skippable_block_names()]
    return {
        "model": name, "stages": len(configs[0]), "gated_sub_path_blocks": sub_path_blocks,
        "skip_aware_batch_norms": sum(isinstance(m, SkipAwareBatchNorm2d) for m in model.modules()),
        "builds": {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
                   for k, v in b["builds"].items()},
        "max_error_vs_eager_relative_to_max_logit": errors, "max_abs_logit": scale,
        "a_gate_overhead": {"bundle_all_on_over_plain": round(gate, 4), "goal": "<= 1.02", "met": gate <= 1.02,
                            "repeats": [round(r, 4) for r in overhead["bundle_all_on_over_plain"]],
                            "generic_all_on_over_plain": round(
                                statistics.median(overhead["generic_all_on_over_plain"]), 4),
                            "measured": f"alternating calls, ratio of the 20th-percentile latencies, "
                                        f"median of {REPEATS} repeats"},
        "b_bn_lowering": {"branch_over_select_median": round(branch, 4), "per_config": per_config,
                          "faster": "select" if branch > 1.0 else "branch"},
        "latency_ms": [{"cfg": c.tolist(), "mac_ratio": round(macs.macs(c.tolist()) / macs.total, 4),
                        **{label: med[f"{label}{c.tolist()}"] for label in ("bundle", "generic-select",
                                                                            "generic-branch")}}
                       for c in cfgs],
        "plain_ms": med["plain"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gated_depth_bench.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results.append(bench_model(name, args.rounds, Path(tmp)))
            r = results[-1]
            print(f"{name}: gate overhead {r['a_gate_overhead']['bundle_all_on_over_plain']}, "
                  f"branch/select {r['b_bn_lowering']['branch_over_select_median']}")
    write_json(args.out, {"schema": "edgeskip.gated_depth_bench/1", "machine": platform.machine(),
                          "processor": platform.processor(), "iree_version": iree_version(),
                          "torch": torch.__version__, "rounds": args.rounds, "models": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
