"""Each registered compiler pass, tested so that it would be caught breaking (real export, real IREE)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import flatten_gate
from iree.compiler import ir
from onnx import numpy_helper

from compiler_passes import DEFAULT_PIPELINE, PassContext, PassError, get_pass, list_passes
from compiler_passes._mlir import all_ifs, defining_op, entry_function
from edgeskip.compile.iree import compile_flags, compile_onnx, import_to_input, iree_compile
from targets import get_target

CTX = PassContext(num_gates=6)
MASKS = [[1] * 6, [0] * 6, [1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1]]


@pytest.mark.parametrize("name", list_passes())
def test_pass_is_registered_and_described(name: str) -> None:
    p = get_pass(name)
    assert p.name == name and p.stage in ("onnx", "input") and p.description


def test_default_pipeline_uses_registered_passes() -> None:
    assert set(DEFAULT_PIPELINE) <= set(list_passes())


# --- channels-last-branch-weights -------------------------------------------------------------------

def test_channels_last_branch_weights_keeps_numbers_and_stores_hwio(gated_onnx: Path) -> None:
    original = onnx.load(str(gated_onnx))
    model = onnx.load(str(gated_onnx))
    summary = get_pass("channels-last-branch-weights").run(model, CTX)
    assert summary["convs_rewritten"] == 12  # two convolutions in each of the 6 gated blocks
    onnx.checker.check_model(model, full_check=True)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    before = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    for node in (n for n in model.graph.node if n.op_type == "If"):
        then = next(a.g for a in node.attribute if a.name == "then_branch")
        producer = {o: n for n in then.node for o in n.output}
        for conv in (n for n in then.node if n.op_type == "Conv"):
            t = producer[conv.input[1]]
            assert t.op_type == "Transpose" and list(t.attribute[0].ints) == [3, 2, 0, 1]
            stored = inits[t.input[0]]
            original_weight = before[t.input[0].removesuffix("__hwio")]
            np.testing.assert_array_equal(stored, original_weight.transpose(2, 3, 1, 0))  # HWIO
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for m in (original, model)]
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for mask in MASKS:
        feeds = {"image": x, "cfg": np.array(mask, dtype=np.int64)}
        a, b = (s.run(None, feeds)[0] for s in sessions)
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


# --- channels-last-gate-boundaries ------------------------------------------------------------------

def _ort_outputs(model: onnx.ModelProto) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return [session.run(None, {"image": x, "cfg": np.array(m, dtype=np.int64)})[0] for m in MASKS]


def test_channels_last_gate_boundaries_keeps_numbers_and_makes_gates_nhwc(gated_onnx: Path) -> None:
    original = onnx.load(str(gated_onnx))
    model = onnx.load(str(gated_onnx))
    summary = get_pass("channels-last-gate-boundaries").run(model, CTX)
    assert summary["gates_rewritten"] == 6 and summary["ifs_left_alone"] == 0
    # One layout change into NHWC per stage: consecutive gates hand NHWC straight on.
    assert summary["layout_changes"] == 3
    onnx.checker.check_model(model, full_check=True)
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in (n for n in model.graph.node if n.op_type == "If"):
        for g in (a.g for a in node.attribute):
            first, last = g.node[0], g.node[-1]
            assert first.op_type == "Transpose" and list(first.attribute[0].ints) == [0, 3, 1, 2]
            assert last.op_type == "Transpose" and list(last.attribute[0].ints) == [0, 2, 3, 1]
            dims = [d.dim_value for d in g.output[0].type.tensor_type.shape.dim]
            assert dims[1] == dims[2] and dims[3] in (16, 32, 64), f"branch output is not NHWC: {dims}"
            nhwc_in = first.input[0]
            assert nhwc_in in producer and producer[nhwc_in].op_type in ("Transpose", "If")
    for a, b in zip(_ort_outputs(original), _ort_outputs(model), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)  # ORT may pick other kernels for NHWC


def _per_call_command_buffers(model: onnx.ModelProto, passes: tuple[str, ...], work: Path) -> int:
    """``hal.command_buffer.create`` in the compiled entry function: command buffers recorded on every call."""
    work.mkdir()
    out = work / "model.vm.mlir"
    compile_onnx(model, get_target("host"), out, work, 6, passes=passes, extra_flags=["--compile-to=vm"])
    text = out.read_text()
    entry = text[text.index("vm.func private @main_graph$async("):text.index("vm.export @main_graph$async ")]
    return entry.count("@hal.command_buffer.create(")


def test_gate_boundaries_let_iree_memoize_every_branch(gated_onnx: Path, tmp_path: Path) -> None:
    without = tuple(p for p in DEFAULT_PIPELINE if p != "channels-last-gate-boundaries")
    assert _per_call_command_buffers(onnx.load(str(gated_onnx)), without, tmp_path / "without") > 0
    assert _per_call_command_buffers(onnx.load(str(gated_onnx)), DEFAULT_PIPELINE, tmp_path / "with") == 0


# --- verify-gates-mlir ------------------------------------------------------------------------------

def _input_module(model: onnx.ModelProto, work: Path) -> ir.Module:
    flags = compile_flags(get_target("host"), [])
    path = import_to_input(model, flags, work)
    return ir.Module.parse(path.read_text(), ir.Context())


@pytest.fixture(scope="module")
def input_module_text(gated_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    model = onnx.load(str(gated_onnx))
    get_pass("channels-last-branch-weights").run(model, CTX)
    work = tmp_path_factory.mktemp("input")
    return str(_input_module(model, work))


def test_verify_gates_mlir_accepts_the_gated_model(input_module_text: str) -> None:
    module = ir.Module.parse(input_module_text, ir.Context())
    assert get_pass("verify-gates-mlir").run(module, CTX) == {"scf_if": 6, "conditioned_on_cfg": 6}


def test_verify_gates_mlir_rejects_a_gate_lowered_to_select(gated_onnx: Path, tmp_path: Path) -> None:
    module = _input_module(flatten_gate(onnx.load(str(gated_onnx)), 1), tmp_path)
    with pytest.raises(PassError, match=r"expected 6 scf.if \(one per gate\), found 5") as e:
        get_pass("verify-gates-mlir").run(module, CTX)
    assert "select/multiply" in str(e.value)


def test_verify_gates_mlir_rejects_a_missing_gate(input_module_text: str) -> None:
    module = ir.Module.parse(input_module_text, ir.Context())
    with pytest.raises(PassError, match=r"expected 7 scf\.if"):
        get_pass("verify-gates-mlir").run(module, PassContext(num_gates=7))


# --- gate-conditions-without-host-syncs -------------------------------------------------------------

def test_host_sync_pass_reads_cfg_on_the_host(input_module_text: str) -> None:
    module = ir.Module.parse(input_module_text, ir.Context())
    summary = get_pass("gate-conditions-without-host-syncs").run(module, CTX)
    assert summary["gates_rewritten"] == 6 and summary["waits_on_fence"]
    offsets = []
    for op in all_ifs(entry_function(module, CTX)):
        cmp = defining_op(op.operands[0])
        assert cmp is not None and cmp.name == "arith.cmpi"
        load = defining_op(cmp.operands[0])
        assert load is not None and load.name == "hal.buffer.load"
        offsets.append(int(ir.IntegerAttr(defining_op(load.operands[1]).attributes["value"]).value))
    assert offsets == [8 * k for k in range(6)]  # gate k reads cfg[k], in execution order


def _host_waits(module_text: str, work: Path, name: str) -> int:
    source, out = work / f"{name}.mlir", work / f"{name}.stream.mlir"
    source.write_text(module_text)
    flags = compile_flags(get_target("host"), list(DEFAULT_PIPELINE))
    iree_compile([*flags, "--compile-from=input", "--compile-to=stream", str(source), "-o", str(out)])
    return len(re.findall(r"stream\.timepoint\.await", out.read_text()))


def test_host_sync_pass_removes_the_per_gate_host_waits(input_module_text: str, tmp_path: Path) -> None:
    module = ir.Module.parse(input_module_text, ir.Context())
    get_pass("gate-conditions-without-host-syncs").run(module, CTX)
    before = _host_waits(input_module_text, tmp_path, "before")
    after = _host_waits(str(module), tmp_path, "after")
    assert before >= 6 + 1, f"expected a host wait per gate before the pass, found {before}"
    assert after == 1, f"expected one host wait (the result) after the pass, found {after}"
