"""Export a trained checkpoint as a gated ONNX model, the gCNN (Korol et al., Sec. II-A.2, Step 2 of Fig. 3).

The gates of :class:`~edgeskip.gating.GatedModel` are ``torch.cond`` while exporting, so the
dynamo exporter writes one ONNX ``If`` per skippable block (then: the block, else: identity)
and the skip configuration becomes a second input, ``cfg`` (int64, B_s entries). Before
anything is written, the graph is checked: exactly B_s real If nodes whose conditions read
cfg[0..B_s-1], then ``onnx.checker``. The file is written atomically and carries the model
name, dataset and normalisation (:mod:`edgeskip.compile.metadata`) for ``edgeskip compile``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from edgeskip_runtime.atomic import atomic_path
from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.registry import Registry

from edgeskip.baselines.skipnet import SkipNet
from edgeskip.compile.metadata import ExportMetadata, write_metadata
from edgeskip.compile.onnx_gates import (
    CFG_INPUT,
    IMAGE_INPUT,
    DecisionGate,
    Gate,
    verify_gates,
    verify_self_gated,
)
from edgeskip.gating import GatedModel
from edgeskip.models.protocol import skippable_blocks
from edgeskip.models.reference import served_model_name
from edgeskip.training.checkpoint import Checkpoint, load_checkpoint

OPSET = 18
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    gates: list[Gate] | list[DecisionGate]  # cfg-read gates, or a self-gated model's data-decided ones
    metadata: ExportMetadata
    gate_count: int | None = None  # torch-mlir: the gates exported (checked when compiled)

    @property
    def num_gates(self) -> int:
        return self.gate_count if self.gate_count is not None else len(self.gates)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """No gradients, and none of the exporter's chatter (deprecations; "torchvision is not installed. Skipping
    torchvision::nms" for every run without torchvision, which edgeskip never needs): it is not for our users."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            yield
    finally:
        registration.setLevel(level)


def export_gated(model: torch.nn.Module, input_shape: list[int], batch_size: int = 1) -> tuple[onnx.ModelProto, int]:
    """Export ``GatedModel(model)`` to an in-memory ONNX model; returns it with B_s."""
    gated = GatedModel(model).eval()
    image = torch.zeros(batch_size, *input_shape)
    cfg = torch.ones(gated.num_gates, dtype=torch.int64)
    with _quiet_exporter():
        program = torch.onnx.export(gated, (image, cfg), dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=[IMAGE_INPUT, CFG_INPUT], output_names=[OUTPUT_NAME])
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    return program.model_proto, gated.num_gates


def export_self_gated(model: SkipNet, input_shape: list[int]) -> onnx.ModelProto:
    """Export a self-gated network (SkipNet) at batch 1: one data-dependent ``If`` per gate, input ``image`` only,
    checked by :func:`verify_self_gated`."""
    image = torch.zeros(1, *input_shape)
    with _quiet_exporter():
        program = torch.onnx.export(model.eval(), (image,), dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=[IMAGE_INPUT], output_names=[OUTPUT_NAME])
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    verify_self_gated(program.model_proto, expected=model.num_gates)
    return program.model_proto


# Front ends: name -> (checkpoint, out, batch size) -> ExportResult. ONNX is the default; torch-mlir writes
# torch-dialect MLIR straight from torch.export (edgeskip.compile.torch_mlir_export).
FRONTENDS: Registry[Callable[[str | Path, str | Path, int], ExportResult]] = Registry("front end")


def export_checkpoint(checkpoint: str | Path, out: str | Path, batch_size: int = 1,
                      frontend: str = "onnx") -> ExportResult:
    """Export ``checkpoint`` to ``out`` with the front end ``frontend``, verified and written atomically."""
    return FRONTENDS.get(frontend)(checkpoint, out, batch_size)


def _val_accuracy(ck: Checkpoint) -> float | None:
    val = [m["val_accuracy"] for m in ck.metrics if "val_accuracy" in m]
    return val[-1] if val else None  # a one-point bundle's Pareto file records it


def _metadata(ck: Checkpoint, block_names: list[str], *, self_gated: bool = False) -> ExportMetadata:
    return ExportMetadata(model=served_model_name(ck.model), dataset=ck.dataset,
                          normalization=ck.normalization.to_dict(), input_shape=[int(v) for v in ck.input_shape],
                          block_names=block_names, self_gated=self_gated, val_accuracy=_val_accuracy(ck))


@FRONTENDS.register("torch-mlir")
def export_torch_mlir(checkpoint: str | Path, out: str | Path, batch_size: int = 1) -> ExportResult:
    """The gated model as torch-dialect MLIR (``.mlir``); its gates are checked when it is compiled."""
    from edgeskip.compile.torch_mlir_export import export_gated_mlir, write_mlir

    ck = load_checkpoint(checkpoint)
    model = ck.build_model()
    if isinstance(model, SkipNet):
        raise UsageError("a self-gated SkipNet exports through ONNX only (no --frontend torch-mlir)",
                         setting="frontend")
    if Path(out).suffix != ".mlir":
        raise UsageError(f"the torch-mlir front end writes MLIR: name the output *.mlir, not {Path(out).name}",
                         setting="out")
    exported = export_gated_mlir(model, [int(v) for v in ck.input_shape], batch_size)
    meta = _metadata(ck, [b.name for b in skippable_blocks(model)])
    write_mlir(out, exported, meta)
    return ExportResult(Path(out), [], meta, gate_count=exported.num_gates)


@FRONTENDS.register("onnx")
def export_onnx(checkpoint: str | Path, out: str | Path, batch_size: int = 1) -> ExportResult:
    """Export ``checkpoint`` to ``out`` (gated ONNX, opset 18), verified and written atomically."""
    ck = load_checkpoint(checkpoint)
    model = ck.build_model()
    shape = [int(v) for v in ck.input_shape]
    if isinstance(model, SkipNet):  # decides its own branches: no cfg, batch 1
        proto = export_self_gated(model, shape)
        gates: list[Gate] | list[DecisionGate] = verify_self_gated(proto, expected=model.num_gates)
        meta = _metadata(ck, model.block_names[1:], self_gated=True)
    else:
        proto, b_s = export_gated(model, shape, batch_size)
        gates = verify_gates(proto, expected=b_s)
        meta = _metadata(ck, [b.name for b in skippable_blocks(model)])
    write_metadata(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
    return ExportResult(out, gates, meta)
