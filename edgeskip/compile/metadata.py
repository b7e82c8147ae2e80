"""What a gated ONNX export records about itself (Korol et al., Sec. II-A.2: the compiled gCNN is self-contained).

``edgeskip export`` writes these ``metadata_props`` so that ``edgeskip compile`` needs nothing
but the ONNX file: model name, dataset, input normalisation, input shape and the B_s gated
blocks. Reading them back checks the format tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import onnx

from edgeskip.compile.errors import CompileError

FORMAT = "edgeskip.onnx/1"
_PREFIX = "edgeskip."


@dataclass(frozen=True)
class ExportMetadata:
    model: str
    dataset: str
    normalization: dict[str, list[float]]  # {"mean": [...], "std": [...]} on the 0..1 scale
    input_shape: list[int]  # (C, H, W) of one image
    block_names: list[str]  # the gated blocks, in cfg order
    # A self-gated model (SkipNet) decides its own branches: no cfg input, one operating point.
    self_gated: bool = False
    # The checkpoint's last validation accuracy, for a one-point bundle's Pareto file (self-gated, or
    # compiled at full depth only as the paper's Original).
    val_accuracy: float | None = None

    @property
    def skippable_blocks(self) -> int:
        return len(self.block_names)

    def to_props(self) -> dict[str, str]:
        values: dict[str, Any] = {"format": FORMAT, "model": self.model, "dataset": self.dataset,
                                  "normalization": self.normalization, "input_shape": self.input_shape,
                                  "block_names": self.block_names, "skippable_blocks": self.skippable_blocks,
                                  "self_gated": self.self_gated, "val_accuracy": self.val_accuracy}
        return {_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def write_metadata(model: onnx.ModelProto, meta: ExportMetadata) -> None:
    props = meta.to_props()
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def read_metadata(model: onnx.ModelProto, source: str = "the ONNX model") -> ExportMetadata:
    props = {p.key[len(_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(_PREFIX)}
    if props.get("format") != FORMAT:
        raise CompileError(f"{source} carries no {FORMAT} metadata (found {props.get('format')!r}); "
                           "export it with `edgeskip export CHECKPOINT --out MODEL.onnx`")
    try:
        return ExportMetadata(model=props["model"], dataset=props["dataset"],
                              normalization=json.loads(props["normalization"]),
                              input_shape=[int(v) for v in json.loads(props["input_shape"])],
                              block_names=list(json.loads(props["block_names"])),
                              self_gated=bool(json.loads(props.get("self_gated", "false"))),
                              val_accuracy=json.loads(props.get("val_accuracy", "null")))
    except (KeyError, ValueError, TypeError) as e:
        raise CompileError(f"{source} has malformed {FORMAT} metadata: {e!r}") from e
