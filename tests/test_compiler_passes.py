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

from edgeskip.compile.iree import compile_flags, compile_onnx, import_to_input, iree_compile
from edgeskip.compiler_passes import DEFAULT_PIPELINE, PassContext, PassError, get_pass, list_passes
from edgeskip.compiler_passes._mlir import defining_op, entry_function, gate_ifs, walk
from edgeskip.targets import get_target

CTX = PassContext(num_gates=6)
MASKS = [[1] * 6, [0] * 6, [1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1]]


@pytest.mark.parametrize("name", list_passes())
def test_pass_is_registered_and_described(name: str) -> None:
    p = get_pass(name)
    assert p.name == name and p.stage in ("onnx", "input", "stream") and p.description


def test_default_pipeline_uses_registered_passes() -> None:
    assert set(DEFAULT_PIPELINE) <= set(list_passes())


# --- channels-last-branch-weights -------------------------------------------------------------------

def test_channels_last_branch_weights_keeps_numbers_and_stores_hwio(gated_onnx: Path) -> None:
    original = onnx.load(str(gated_onnx))
    model = onnx.load(str(gated_onnx))
    summary = get_pass("channels-last-branch-weights").run(model, CTX)
    # Every convolution: two in each of the 6 gated blocks, and 7 outside them (stem, 3 first blocks),
    # which specialize-configs moves into control flow too (the fallback path).
    assert summary["convs_rewritten"] == 12 + 7
    onnx.checker.check_model(model, full_check=True)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    before = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer}
    graphs = [model.graph] + [next(a.g for a in n.attribute if a.name == "then_branch")
                              for n in model.graph.node if n.op_type == "If"]
    for graph in graphs:
        producer = {o: n for n in graph.node for o in n.output}
        for conv in (n for n in graph.node if n.op_type == "Conv"):
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
    for op in gate_ifs(entry_function(module, CTX)):
        cmp = defining_op(op.operands[0])
        assert cmp is not None and cmp.name == "arith.cmpi"
        load = defining_op(cmp.operands[0])
        assert load is not None and load.name == "hal.buffer.load"
        offsets.append(int(ir.IntegerAttr(defining_op(load.operands[1]).attributes["value"]).value))
    assert offsets == [8 * k for k in range(6)]  # gate k reads cfg[k], in execution order



def test_host_sync_pass_skips_the_wait_on_a_null_fence(input_module_text: str) -> None:
    """The synchronous entry passes a null wait fence; an unguarded await on it cost ~11 us per call."""
    module = ir.Module.parse(input_module_text, ir.Context())
    get_pass("gate-conditions-without-host-syncs").run(module, CTX)
    entry = entry_function(module, CTX)
    awaits = [op for op in walk(entry) if op.name == "hal.fence.await"]
    assert len(awaits) == 1
    guard = awaits[0].parent
    assert guard.name == "scf.if" and not guard.results and guard not in gate_ifs(entry)
    present = defining_op(guard.operands[0])
    assert present is not None and present.name == "util.cmp.ne"
    assert {defining_op(v).name if defining_op(v) else "argument" for v in present.operands} == {"util.null",
                                                                                                   "argument"}
    assert present.operands[0] == awaits[0].operands[-1]  # the very fence it awaits

def _to_stream(module_text: str, work: Path, name: str) -> str:
    """The module after IREE's stream phase (the schedule: submissions, allocations, dispatches)."""
    source, out = work / f"{name}.mlir", work / f"{name}.stream.mlir"
    source.write_text(module_text)
    flags = compile_flags(get_target("host"), list(DEFAULT_PIPELINE))
    iree_compile([*flags, "--compile-from=input", "--compile-to=stream", str(source), "-o", str(out)])
    return out.read_text()


def _host_waits(module_text: str, work: Path, name: str) -> int:
    return len(re.findall(r"stream\.timepoint\.await", _to_stream(module_text, work, name)))


def test_host_sync_pass_removes_the_per_gate_host_waits(input_module_text: str, tmp_path: Path) -> None:
    module = ir.Module.parse(input_module_text, ir.Context())
    get_pass("gate-conditions-without-host-syncs").run(module, CTX)
    before = _host_waits(input_module_text, tmp_path, "before")
    after = _host_waits(str(module), tmp_path, "after")
    assert before >= 6 + 1, f"expected a host wait per gate before the pass, found {before}"
    assert after == 1, f"expected one host wait (the result) after the pass, found {after}"


# --- specialize-configs -----------------------------------------------------------------------------

FRONT = [[1] * 6, [1, 1, 1, 1, 1, 0], [0, 1, 0, 1, 0, 1], [0] * 6]


def _specialized(input_module_text: str, configs: list[list[int]]) -> tuple[ir.Module, dict]:
    module = ir.Module.parse(input_module_text, ir.Context())
    ctx = PassContext(num_gates=6, specialized_configs=tuple(tuple(c) for c in configs))
    get_pass("gate-conditions-without-host-syncs").run(module, ctx)
    return module, get_pass("specialize-configs").run(module, ctx)


def _functions(module: ir.Module) -> dict[str, ir.Operation]:
    return {ir.StringAttr(op.operation.attributes["sym_name"]).value: op.operation
            for op in module.body.operations if op.operation.name == "util.func"}


def test_specialize_configs_builds_one_gate_free_function_per_config(input_module_text: str) -> None:
    module, summary = _specialized(input_module_text, [*FRONT, FRONT[0]])  # a repeat is compiled once
    assert summary["configs"] == len(FRONT) and summary["constant_exprs"] > 0
    funcs = _functions(module)
    entry = entry_function(module, CTX)
    # The entry tests the configs in order: each then-block calls its copy, the innermost else holds the gates.
    op, called = next(op for op in gate_ifs(entry) if op.parent.operation == entry), []
    while True:
        calls = [o.operation for o in op.regions[0].blocks[0].operations if o.operation.name == "util.call"]
        assert len(calls) == 1
        called.append(ir.FlatSymbolRefAttr(calls[0].attributes["callee"]).value)
        nested = [o.operation for o in op.regions[1].blocks[0].operations if o.operation.name == "scf.if"]
        if len(nested) == 6:  # the fallback: the gated network, every gate still an scf.if
            break
        assert len(nested) == 1
        op = nested[0]
    assert called == [f"main_graph$config{i}" for i in range(len(FRONT))]
    convs = []
    for name in called:
        body = list(walk(funcs[name]))
        assert not [o for o in body if o.name == "scf.if"], f"{name} still branches"
        assert "util.inline.never" in str(funcs[name].attributes["inlining_policy"])
        convs.append(sum(o.name.startswith("linalg.conv") for o in body))
    # Copies of configs that skip more blocks hold fewer convolutions: 2 per skipped block.
    assert convs == [convs[0] - 2 * FRONT[i].count(0) for i in range(len(FRONT))] and convs[-1] > 0


def _schedule(stream: str) -> dict[str, tuple[int, int]]:
    """Per function: its submissions (``stream.cmd.execute``) and concurrent groups."""
    out = {}
    for m in re.finditer(r"util\.func (?:public|private) @([\w$]+)\(", stream):
        body = stream[m.start():stream.index("\n  }\n", m.start())]
        out[m.group(1)] = (body.count("stream.cmd.execute"), body.count("stream.cmd.concurrent"))
    return out


def _kernels(stream: str) -> set[str]:
    """The kernels the module dispatches, by what they compute (the dispatch numbering dropped)."""
    return set(re.findall(r"stream\.cmd\.dispatch @[\w$]+::@[\w$]+_dispatch_\d+_(\w+)", stream))


def test_each_specialized_config_is_one_submission_of_the_same_kernels(input_module_text: str,
                                                                        tmp_path: Path) -> None:
    generic, _ = _specialized(input_module_text, [])
    specialized, _ = _specialized(input_module_text, FRONT)
    generic_stream = _to_stream(str(generic), tmp_path, "generic")
    stream = _to_stream(str(specialized), tmp_path, "specialized")
    schedule = _schedule(stream)
    for i in range(len(FRONT)):
        submits, concurrent = schedule[f"main_graph$config{i}"]
        assert submits == 1, "a specialized config must be one queue submission"
        assert concurrent > 0, "the copy lost its concurrent groups (local-task would run it serially)"
    assert schedule["main_graph$async"][0] == _schedule(generic_stream)["main_graph$async"][0]
    # No new kernel: the copies reuse the gated network's dispatches. A weight left in OIHW inside a copy
    # would show up as another convolution kernel (or a per-call transpose) here, and run 15x slower.
    assert _kernels(stream) == _kernels(generic_stream)


def test_specialize_configs_without_configs_changes_nothing(input_module_text: str) -> None:
    module, summary = _specialized(input_module_text, [])
    assert summary == {"configs": 0}
    assert len(gate_ifs(entry_function(module, CTX))) == 6


def test_specialize_configs_refuses_bad_input(input_module_text: str) -> None:
    with pytest.raises(PassError, match="has 5 entries, the model has 6 gates"):
        _specialized(input_module_text, [[1] * 5])
    module = ir.Module.parse(input_module_text, ir.Context())  # host reads missing
    with pytest.raises(PassError, match="run gate-conditions-without-host-syncs before"):
        get_pass("specialize-configs").run(module, PassContext(num_gates=6, specialized_configs=((1,) * 6,)))


def _copy_transients(stream_text: str) -> dict[str, list[int]]:
    """Per specialized copy in a stream-phase module, the byte sizes of its transient allocations."""
    out = {}
    for m in re.finditer(r"util\.func private @(main_graph\$config\d+)\(.*?\n  }", stream_text, re.S):
        body = m.group(0)
        constants = dict(re.findall(r"(%\w+) = arith\.constant (\d+) : index", body))
        sizes = re.findall(r"stream\.resource\.alloca uninitialized [^\n]*transient>\{(%\w+)\}", body)
        out[m.group(1)] = [int(constants[v]) for v in sizes]
    return out


def test_uniform_config_transients_gives_every_copy_one_size(input_module_text: str, tmp_path: Path) -> None:
    specialized, _ = _specialized(input_module_text, FRONT)
    stream_text = _to_stream(str(specialized), tmp_path, "specialized")
    before = _copy_transients(stream_text)
    assert len(before) == len(FRONT) and all(len(sizes) == 1 for sizes in before.values()), before
    largest = max(sizes[0] for sizes in before.values())
    assert len({sizes[0] for sizes in before.values()}) > 1, "copies of one size: this test would prove nothing"
    module = ir.Module.parse(stream_text, ir.Context())
    summary = get_pass("uniform-config-transients").run(module, CTX)
    assert _copy_transients(str(module)) == {name: [largest] for name in before}
    assert summary == {"copies": len(FRONT), "left_alone": 0, "transient_bytes": largest,
                       "resized": sum(sizes[0] != largest for sizes in before.values())}


def test_uniform_config_transients_without_copies_changes_nothing(input_module_text: str, tmp_path: Path) -> None:
    generic, _ = _specialized(input_module_text, [])
    stream_text = _to_stream(str(generic), tmp_path, "generic")
    module = ir.Module.parse(stream_text, ir.Context())
    assert get_pass("uniform-config-transients").run(module, CTX) == {"copies": 0, "left_alone": 0}
    assert str(module) == str(ir.Module.parse(stream_text, ir.Context()))

def test_specialized_executable_equals_the_gated_one(gated_onnx: Path, tmp_path: Path) -> None:
    """Front configs run their copy, others the gates: every configuration gives the generic path's output."""
    from edgeskip_runtime.module import load_function, to_numpy

    fns = {}
    for label, front in (("generic", []), ("specialized", FRONT)):
        work = tmp_path / label
        work.mkdir()
        compile_onnx(onnx.load(str(gated_onnx)), get_target("host"), work / "model.vmfb", work, 6,
                     specialize=front)
        _, fn = load_function(work / "model.vmfb", "main_graph")
        fns[label] = fn
    shape = [d.dim_value for d in onnx.load(str(gated_onnx)).graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    others = [[1, 0, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0], [1, 1, 1, 1, 0, 1]]
    outputs = set()
    for mask in FRONT + others:
        cfg = np.array(mask, dtype=np.int64)
        a, b = (to_numpy(fns[k](x, cfg)) for k in ("generic", "specialized"))
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0, err_msg=f"cfg {mask}")
        outputs.add(b.tobytes())
    assert len(outputs) == len(FRONT + others)
