"""Skip scaling on the XU4's instruction set: latency of each Pareto configuration of an armv7
(``odroid-xu4``) bundle, run by IREE's stock armhf runtime under qemu-arm, against its MACs.

Emulation is tens of times slower than the board and not in proportion per instruction, so only
ratios to the no-skip configuration are reported, never milliseconds as a board figure. Each
call is a whole ``iree-run-module`` process; its fixed cost (process start, runtime init, module
load) is measured on a one-op module compiled here for the same target and subtracted.
Configurations take turns in every round, so a slow spell of the machine hits them alike.

    python benchmarks/armv7_skip_scaling.py BUNDLE/ --out docs/results/armv7_skip_scaling.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.manifest import Manifest

from edgeskip.compile.iree import iree_compile
from edgeskip.targets import get_target

ROOT = Path(__file__).resolve().parent.parent
TINY = "func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> {\n  %0 = arith.addf %a, %a : tensor<4xf32>\n" \
       "  return %0 : tensor<4xf32>\n}\n"


def run_once(qemu: str, tool: Path, vmfb: Path, function: str, inputs: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([qemu, "-L", "/usr/arm-linux-gnueabihf", str(tool), "--device=local-sync",
                           f"--module={vmfb}", f"--function={function}", *(f"--input={i}" for i in inputs)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"iree-run-module failed on {vmfb}: {proc.stderr[-1000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tool", type=Path, default=ROOT / ".cache/iree-armhf/bin/iree-run-module")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/armv7_skip_scaling.json"))
    args = ap.parse_args()
    qemu = shutil.which("qemu-arm-static")
    if qemu is None or not args.tool.is_file():
        raise SystemExit("needs qemu-arm-static and the stock armhf iree-run-module: run `make armhf-runtime`")
    manifest = Manifest.read(args.bundle)
    if manifest.target["arch"] != "armv7l":
        raise SystemExit(f"{args.bundle} is for {manifest.target_name}, not an armv7 board")
    configs = json.loads((args.bundle / "pareto.json").read_text())["configs"]
    image = manifest.input("image")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        np.save(tmp / "x.npy", np.random.default_rng(0).standard_normal(image.shape).astype(np.float32))
        for k, c in enumerate(configs):
            np.save(tmp / f"cfg{k}.npy", np.array(c["mask"], dtype=np.int64))
        (tmp / "tiny.mlir").write_text(TINY)
        iree_compile([*get_target(manifest.target_name).iree_flags(), str(tmp / "tiny.mlir"),
                      "-o", str(tmp / "tiny.vmfb")])
        samples: dict[str, list[float]] = {"fixed": [], **{str(k): [] for k in range(len(configs))}}
        for _ in range(args.rounds):
            samples["fixed"].append(run_once(qemu, args.tool, tmp / "tiny.vmfb", "main", ["4xf32=1"]))
            for k in range(len(configs)):
                samples[str(k)].append(run_once(qemu, args.tool, args.bundle / "model.vmfb", "main_graph",
                                                [f"@{tmp / 'x.npy'}", f"@{tmp / f'cfg{k}.npy'}"]))
    fixed = statistics.median(samples["fixed"])
    full = statistics.median(samples["0"]) - fixed
    rows = []
    for k, c in enumerate(configs):
        t = statistics.median(samples[str(k)]) - fixed
        rows.append({"index": k, "mask": c["mask"], "n_skipped": c["n_skipped"], "macs": c["macs"],
                     "mac_ratio": c["macs"] / configs[0]["macs"], "latency_ratio": t / full,
                     "emulated_s": t, "raw_process_s": statistics.median(samples[str(k)])})
    gaps = [r["latency_ratio"] - r["mac_ratio"] for r in rows[1:]]
    doc = {"benchmark": "edgeskip.armv7_skip_scaling/1", "machine": platform.platform(),
           "bundle": str(args.bundle), "target": manifest.target_name, "emulator": "qemu-arm-static",
           "runtime": "stock iree-run-module (armhf, local-sync) built from ../shared/vendor",
           "rounds": args.rounds, "fixed_cost_s": fixed, "configs": rows,
           "mean_abs_latency_minus_mac_ratio": statistics.fmean(abs(g) for g in gaps) if gaps else 0.0,
           "note": "ratios only: emulation does not preserve the board's absolute speed or per-instruction costs"}
    write_json(args.out, doc)
    for r in rows:
        print(f"skip {r['n_skipped']}: latency ratio {r['latency_ratio']:.3f}  MAC ratio {r['mac_ratio']:.3f}")


if __name__ == "__main__":
    main()
