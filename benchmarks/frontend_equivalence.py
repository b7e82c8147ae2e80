"""The two front ends compile the same module (Korol et al., Sec. II-A.2): for every registered model, the gated
network exported through ONNX and through torch-mlir, compiled for the host with the default passes and the same
front, must give the same outputs in every front configuration and in random ones. Written as JSON, with each
front end's export and compile time and vmfb size.

Random weights at the scales of a trained network (:func:`trained_like`; equivalence does not depend on
training, but an absolute tolerance depends on the logits' size); the front is the configurations skipping
the N least-index blocks for N = 0, B_s/4, B_s/2, 3 B_s/4, B_s.

    python benchmarks/frontend_equivalence.py --out docs/results/frontend_equivalence.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.module import load_function, to_numpy

from edgeskip.compile.export import export_gated
from edgeskip.compile.iree import CompileLog, compile_mlir, compile_onnx, iree_version
from edgeskip.compile.torch_mlir_export import export_gated_mlir
from edgeskip.models import create_model, list_models
from edgeskip.targets import get_target

SHAPE = [1, 32, 32]
RANDOM_MASKS = 12


def trained_like(model: torch.nn.Module, logit_scale: float = 10.0) -> torch.nn.Module:
    """Random weights with the scales of a trained network, so that an absolute tolerance means what it means
    for one: non-trivial batch-norm statistics, residual branches damped (the last batch norm of each block
    scaled to 0.2; at plain random init a ResNet-56's logits reach 1e4 and a ResNet-110's 4e8), and the
    classifier scaled so that the largest logit of a probe image is ``logit_scale``."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if name.endswith("bn2"):
                    m.weight.fill_(0.2)
        model.eval()
        fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        peak = model(torch.randn(1, *SHAPE, generator=g)).abs().max().item()
        fc.weight.mul_(logit_scale / peak)
        fc.bias.mul_(logit_scale / peak)
    return model


def check_model(name: str, work: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    model = trained_like(create_model(name, in_channels=SHAPE[0]))
    host = get_target("host")
    t = time.perf_counter()
    proto, b_s = export_gated(model, SHAPE)
    onnx_export_s = time.perf_counter() - t
    t = time.perf_counter()
    exported = export_gated_mlir(model, SHAPE)
    mlir_export_s = time.perf_counter() - t
    front = [[0] * n + [1] * (b_s - n) for n in sorted({0, b_s // 4, b_s // 2, 3 * b_s // 4, b_s})]
    (work / name).mkdir()
    src = work / name / "model.mlir"
    src.write_text(exported.text)
    builds = {}
    for label in ("onnx", "torch-mlir"):
        d = work / name / label
        d.mkdir()
        t = time.perf_counter()
        if label == "onnx":
            compile_onnx(proto, host, d / "model.vmfb", d, b_s, log=CompileLog(), specialize=front)
        else:
            compile_mlir(src, host, d / "model.vmfb", d, b_s, log=CompileLog(), specialize=front,
                         passes_at_export=[p["name"] for p in exported.passes])
        builds[label] = {"compile_s": round(time.perf_counter() - t, 1),
                         "vmfb_bytes": (d / "model.vmfb").stat().st_size,
                         "fn": load_function(d / "model.vmfb", "main_graph")[1]}
    rng = np.random.default_rng(0)
    masks = [*front, *(rng.integers(0, 2, b_s).tolist() for _ in range(RANDOM_MASKS))]
    worst = peak = 0.0
    for mask in masks:
        x = rng.standard_normal((1, *SHAPE)).astype(np.float32)
        cfg = np.array(mask, np.int64)
        a, b = (to_numpy(builds[k]["fn"](x, cfg)) for k in ("onnx", "torch-mlir"))
        worst, peak = max(worst, float(np.abs(a - b).max())), max(peak, float(np.abs(a).max()))
    return {"model": name, "skippable_blocks": b_s, "front_configs": len(front), "compared_configs": len(masks),
            "max_abs_difference": worst, "max_abs_logit": peak, "within_1e-5": worst <= 1e-5,
            "export_s": {"onnx": round(onnx_export_s, 1), "torch_mlir": round(mlir_export_s, 1)},
            **{k: {label: builds[label][k] for label in builds} for k in ("compile_s", "vmfb_bytes")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(list_models()))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/frontend_equivalence.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results.append(check_model(name, Path(tmp)))
            print(f"{name}: max |onnx - torch-mlir| = {results[-1]['max_abs_difference']:.3g} over "
                  f"{results[-1]['compared_configs']} configurations")
    write_json(args.out, {"schema": "edgeskip.frontend_equivalence/1", "iree_version": iree_version(),
                          "torch": torch.__version__, "models": results,
                          "all_within_1e-5": all(r["within_1e-5"] for r in results)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
