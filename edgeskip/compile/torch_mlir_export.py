"""The torch-mlir front end: the gated model as torch-dialect MLIR straight from ``torch.export``, no ONNX
(Korol et al., Sec. II-A.2: PyTorch -> torch-mlir -> IREE, gates as ``if`` blocks).

``GatedModel`` exports each gate as ``torch.cond``; torch-mlir's FX importer, extended by
:class:`edgeskip.compile.fx_cond_import.CondNodeImporter`, turns each into ``torch.prim.If``. The module's
entry is ``main_graph(image, cfg) -> logits``, as on the ONNX path, so the runtime cannot tell them apart.

File format (``edgeskip.torch-mlir/1``): the MLIR text, whose first line is a comment holding the export
metadata as JSON (the fields of :class:`~edgeskip.compile.metadata.ExportMetadata` plus ``format`` and the
entry function's ``inputs`` and ``outputs``)::

    // edgeskip.metadata {"format": "edgeskip.torch-mlir/1", "model": "resnet20", ...}
    module { ... }

A comment, so ``iree-compile`` reads the file as it is and ``edgeskip compile`` needs no torch-mlir to read
the header.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeskip_runtime.atomic import atomic_path

from edgeskip.compile.errors import CompileError
from edgeskip.compile.metadata import ExportMetadata
from edgeskip.compiler_passes import DEFAULT_PIPELINE, PassContext, get_pass

if TYPE_CHECKING:  # `edgeskip compile` reads the header without torch
    import torch

FORMAT = "edgeskip.torch-mlir/1"
HEADER = "// edgeskip.metadata "
ENTRY = "main_graph"


def fold_batch_norms(model: torch.nn.Module) -> int:
    """Replace every eval-mode ``BatchNorm2d`` of ``model`` by its per-channel ``x * scale + shift``, in place.

    Why: torch-mlir decomposes an eval batch norm into arithmetic on its statistics (``sqrt(var + eps)``,
    a division, ...) that IREE treats as constant expressions to evaluate at compile time, once in every
    specialized copy of the network; ONNX's importer folds them on import. ResNet-110 with 35 specialized
    configurations took 1,117 s in ``--compile-to=stream`` this way (25 s from ONNX). The skip-aware batch
    norms of a Gated Depth network keep both of their sets (they fold themselves into a select)."""
    from torch import nn

    from edgeskip.models.gated_depth import SkipAwareBatchNorm2d
    from edgeskip.models.protocol import replace_module

    class AffineBatchNorm(nn.Module):
        def __init__(self, bn: nn.BatchNorm2d) -> None:
            super().__init__()
            scale, shift = SkipAwareBatchNorm2d._affine(bn)
            self.register_buffer("scale", scale.detach().reshape(1, -1, 1, 1).clone())
            self.register_buffer("shift", shift.detach().reshape(1, -1, 1, 1).clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale + self.shift

    inside_followers = {id(m) for f in model.modules() if isinstance(f, SkipAwareBatchNorm2d) for m in (f.on, f.off)}
    names = [n for n, m in model.named_modules()
             if type(m) is nn.BatchNorm2d and not m.training and id(m) not in inside_followers]
    for name in names:
        replace_module(model, name, AffineBatchNorm(model.get_submodule(name)))
    return len(names)


@dataclass
class MlirExport:
    text: str
    num_gates: int
    io: dict[str, list[dict[str, Any]]]  # the entry's inputs and outputs: name, shape, dtype
    passes: list[dict[str, Any]]  # the torch forms of onnx-stage passes applied: name and summary


def export_gated_mlir(model: torch.nn.Module, input_shape: list[int], batch_size: int = 1,
                      passes: Sequence[str] = DEFAULT_PIPELINE) -> MlirExport:
    """``GatedModel(model)`` as torch-dialect MLIR text.

    Of ``passes``, the ``onnx``-stage ones with a torch form (:meth:`CompilerPass.run_torch`) rewrite the
    gated copy first; ``edgeskip compile`` reads which from the header."""
    import torch
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    from torch_mlir.extras.fx_importer import FxImporter
    from torch_mlir.fx import export_and_import

    from edgeskip.compile.fx_cond_import import CondNodeImporter
    from edgeskip.gating import GatedModel

    gated = GatedModel(model).eval()
    image = torch.zeros(batch_size, *input_shape)
    cfg = torch.ones(gated.num_gates, dtype=torch.int64)
    ctx = PassContext(num_gates=gated.num_gates)
    fold_batch_norms(gated)
    applied = []
    for name in passes:
        p = get_pass(name)
        if p.stage == "onnx" and p.has_torch_form():
            applied.append({"name": name, **p.run_torch(gated, ctx)})
    context = ir.Context()
    torch_d.register_dialect(context)
    importer = FxImporter(context=context, graph_node_importer_cls=CondNodeImporter)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        module = export_and_import(gated, image, cfg, fx_importer=importer, func_name=ENTRY)
        logits = gated(image, cfg)
    module.operation.verify()
    io = {"inputs": [{"name": "image", "shape": list(image.shape), "dtype": "float32"},
                     {"name": "cfg", "shape": [gated.num_gates], "dtype": "int64"}],
          "outputs": [{"name": "logits", "shape": list(logits.shape), "dtype": "float32"}]}
    return MlirExport(str(module), gated.num_gates, io, applied)


def write_mlir(path: str | Path, export: MlirExport, meta: ExportMetadata) -> Path:
    """Write the header line and the module, atomically."""
    header = {"format": FORMAT, **asdict(meta), **export.io, "passes_at_export": [p["name"] for p in export.passes]}
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(HEADER + json.dumps(header) + "\n" + export.text)
    return path


def read_mlir_header(path: str | Path) -> tuple[ExportMetadata, dict[str, Any]]:
    """The metadata and the rest of the header (the entry's ``inputs`` and ``outputs``, ``passes_at_export``) of
    a torch-mlir export; a clear error for anything else."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise CompileError(f"cannot read {path}: {e}") from e
    if not first.startswith(HEADER):
        raise CompileError(f"{path} carries no {FORMAT} header; export it with "
                           "`edgeskip export CHECKPOINT --frontend torch-mlir --out MODEL.mlir`")
    try:
        doc = json.loads(first[len(HEADER):])
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        meta = ExportMetadata(model=doc["model"], dataset=doc["dataset"], normalization=doc["normalization"],
                              input_shape=[int(v) for v in doc["input_shape"]], block_names=list(doc["block_names"]),
                              self_gated=bool(doc.get("self_gated", False)), val_accuracy=doc.get("val_accuracy"))
        io = {"inputs": list(doc["inputs"]), "outputs": list(doc["outputs"]),
              "passes_at_export": list(doc.get("passes_at_export", []))}
    except (KeyError, ValueError, TypeError) as e:
        raise CompileError(f"{path} has a malformed {FORMAT} header: {e!r}") from e
    return meta, io


__all__ = ["ENTRY", "FORMAT", "MlirExport", "export_gated_mlir", "fold_batch_norms", "read_mlir_header", "write_mlir"]
