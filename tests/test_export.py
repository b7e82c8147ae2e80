"""`edgeskip export`: one real If per gate driven by cfg, metadata for compile, same numbers as eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import flatten_gate

from edgeskip.compile.errors import GateStructureError
from edgeskip.compile.metadata import read_metadata
from edgeskip.compile.onnx_gates import verify_gates
from edgeskip.gating import GatedModel
from edgeskip.training.checkpoint import load_checkpoint


def test_export_has_one_if_per_gate(gated_onnx: Path, synthetic_checkpoint: Path) -> None:
    model = onnx.load(str(gated_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 18
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["image", "cfg"]
    assert inputs["cfg"].elem_type == onnx.TensorProto.INT64
    assert [d.dim_value for d in inputs["cfg"].shape.dim] == [6]
    ifs = [n for n in model.graph.node if n.op_type == "If"]
    assert len(ifs) == 6
    gates = verify_gates(model, expected=6)
    assert [g.index for g in gates] == list(range(6))
    for node in ifs:
        branches = {a.name: a.g for a in node.attribute}
        assert [n.op_type for n in branches["else_branch"].node] == ["Identity"]
        assert sum(n.op_type == "Conv" for n in branches["then_branch"].node) == 2


def test_export_embeds_checkpoint_metadata(gated_onnx: Path, synthetic_checkpoint: Path) -> None:
    ck = load_checkpoint(synthetic_checkpoint)
    meta = read_metadata(onnx.load(str(gated_onnx)))
    assert (meta.model, meta.dataset) == (ck.model, ck.dataset)
    assert meta.normalization == ck.normalization.to_dict()
    assert meta.input_shape == list(ck.input_shape)
    assert meta.skippable_blocks == 6


def test_export_matches_eager_under_onnxruntime(gated_onnx: Path, synthetic_checkpoint: Path) -> None:
    ck = load_checkpoint(synthetic_checkpoint)
    gated = GatedModel(ck.build_model()).eval()
    session = ort.InferenceSession(str(gated_onnx), providers=["CPUExecutionProvider"])
    x = torch.randn(1, *ck.input_shape, generator=torch.Generator().manual_seed(1))
    for mask in ([1] * 6, [0] * 6, [1, 0, 1, 0, 1, 0], [0, 0, 0, 1, 1, 1]):
        cfg = torch.tensor(mask)
        with torch.no_grad():
            expected = gated(x, cfg).numpy()
        got = session.run(None, {"image": x.numpy(), "cfg": cfg.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_a_flattened_gate_is_refused(gated_onnx: Path) -> None:
    model = flatten_gate(onnx.load(str(gated_onnx)), 2)
    with pytest.raises(GateStructureError, match=r"expected 6 top-level If nodes .* found 5"):
        verify_gates(model, expected=6)


def test_an_inverted_gate_condition_is_refused(gated_onnx: Path) -> None:
    model = onnx.load(str(gated_onnx))
    gate = next(n for n in model.graph.node if n.op_type == "If")
    not_node = next(n for n in model.graph.node if n.output[0] == gate.input[0])
    assert not_node.op_type == "Not"
    not_node.op_type = "Identity"  # now the block runs when cfg[k] == 0
    with pytest.raises(GateStructureError, match="does not mean 'run iff cfg"):
        verify_gates(model, expected=6)


def test_export_cli_refuses_a_missing_checkpoint_clearly(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgeskip.cli import main

    result = CliRunner().invoke(main, ["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.onnx").exists()
