"""A deployable bundle for one board (Korol et al., Sec. II-A.2 and II-B: one executable holds every
skip configuration; the runtime picks configurations from the Pareto front).

``edgeskip compile MODEL.onnx --target T --pareto PARETO.json --out BUNDLE/`` writes::

    BUNDLE/model.vmfb     the compiled gCNN, entry main_graph(image, cfg)
    BUNDLE/pareto.json    the operating points (checked: skippable_blocks == cfg length)
    BUNDLE/compile.log    passes, commands, flags and timings
    BUNDLE/manifest.json  schema edgeskip.bundle/1 (below), with the sha256 of every other file

The folder is built in a temporary sibling and swapped into place
(:func:`edgeskip_runtime.atomic.replace_dir`), never left half-written. The manifest's format is
defined once, by :class:`edgeskip_runtime.manifest.Manifest`, which the board reads it with.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from edgeskip_runtime.atomic import replace_dir
from edgeskip_runtime.bundle import Bundle, sha256_file
from edgeskip_runtime.manifest import MANIFEST, Manifest, TensorSpec
from edgeskip_runtime.pareto import ConfigPoint, ParetoFront
from google.protobuf.message import DecodeError

from edgeskip.compile.elf import describe_executables
from edgeskip.compile.errors import CompileError
from edgeskip.compile.iree import ENTRY_FUNCTION, CompileLog, compile_mlir, compile_onnx, iree_version
from edgeskip.compile.metadata import ExportMetadata, read_metadata
from edgeskip.compile.onnx_gates import DecisionGate, Gate, cfg_length, verify_gates, verify_self_gated
from edgeskip.compile.torch_mlir_export import read_mlir_header
from edgeskip.compiler_passes import DEFAULT_PIPELINE, SELF_GATED_PIPELINE
from edgeskip.targets import Target, get_target

_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32"}


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read and check an ONNX file; a missing, truncated or corrupt file raises a clear CompileError."""
    path = Path(path)
    if not path.is_file():
        raise CompileError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load_model(str(path))
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CompileError(f"{path} is not a readable ONNX model (corrupt or truncated?): {first}") from e
    if not model.graph.node:
        raise CompileError(f"{path} is not a readable ONNX model (corrupt or truncated?): it has no nodes")
    return model


def _io(values: Sequence[onnx.ValueInfoProto]) -> tuple[TensorSpec, ...]:
    out = []
    for v in values:
        t = v.type.tensor_type
        out.append(TensorSpec(v.name, tuple(int(d.dim_value) for d in t.shape.dim),
                              _DTYPES.get(t.elem_type, onnx.TensorProto.DataType.Name(t.elem_type).lower())))
    return tuple(out)


def _check_pareto(pareto_path: Path, meta: ExportMetadata, b_s: int) -> ParetoFront:
    front = ParetoFront.load(pareto_path)
    if front.skippable_blocks != b_s:
        raise CompileError(f"{pareto_path} is for a model with {front.skippable_blocks} skippable blocks, but the "
                           f"ONNX model's cfg input has {b_s} entries ({meta.model}); "
                           "use the Pareto file of this model")
    return front


def _one_point_front(meta: ExportMetadata, b_s: int) -> ParetoFront:
    """One operating point: a self-gated model's (no cfg, an empty mask) or the full-depth configuration of a
    cfg-gated model compiled as the paper's Original. ``profile`` measures its latency."""
    meta_doc = {"self_gated": True, "gated_blocks": meta.skippable_blocks} if meta.self_gated \
        else {"full_depth_only": True}
    return ParetoFront(meta.model, meta.dataset, b_s, [ConfigPoint([1] * b_s, meta.val_accuracy or 0.0, 0.0,
                                                                   latency_source="not yet profiled")], meta_doc)


@dataclass
class _Source:
    """What a bundle needs from an export, whichever front end wrote it."""

    meta: ExportMetadata
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    onnx: onnx.ModelProto | None = None  # the ONNX front end's model
    mlir: Path | None = None  # the torch-mlir front end's file
    passes_at_export: tuple[str, ...] = ()


def _load_source(path: Path) -> _Source:
    """An ONNX export, or with the suffix ``.mlir`` a torch-mlir one (:mod:`edgeskip.compile.torch_mlir_export`)."""
    if path.suffix == ".mlir":
        if not path.is_file():
            raise CompileError(f"MLIR model {path} does not exist")
        meta, header = read_mlir_header(path)
        return _Source(meta, tuple(TensorSpec.from_dict(d) for d in header["inputs"]),
                       tuple(TensorSpec.from_dict(d) for d in header["outputs"]), mlir=path,
                       passes_at_export=tuple(header["passes_at_export"]))
    model = load_onnx(path)
    return _Source(read_metadata(model, str(path)), _io(model.graph.input), _io(model.graph.output), onnx=model)


def build_bundle(onnx_path: str | Path, target: str | Target, pareto_path: str | Path | None, out: str | Path,
                 passes: Sequence[str] | None = None, extra_flags: Sequence[str] = (), *,
                 full_depth_only: bool = False) -> Bundle:
    """Compile ``onnx_path`` (an ONNX export, or a torch-mlir one: ``.mlir``) for ``target`` and write the
    bundle folder ``out`` atomically.

    A self-gated export (SkipNet) needs no Pareto file: it is one operating point, compiled with the passes
    that do not read cfg (``SELF_GATED_PIPELINE``). ``full_depth_only`` compiles a cfg-gated model with the
    full-depth configuration as its only operating point, also without a Pareto file: the paper's Original
    (Sec. III-A), a straight-line network at the same compiler settings as the adaptive bundle."""
    t0 = time.perf_counter()
    board = target if isinstance(target, Target) else get_target(target)  # unknown: lists the known boards
    source = _load_source(Path(onnx_path))
    model, meta = source.onnx, source.meta
    out = Path(out)
    if out.exists() and not (out / MANIFEST).is_file():
        raise CompileError(f"{out} exists and is not an edgeskip bundle; refusing to replace it")
    if meta.self_gated and model is None:
        raise CompileError(f"{onnx_path}: a self-gated model compiles from its ONNX export only")
    if meta.self_gated:
        assert model is not None
        b_s, front = 0, _one_point_front(meta, 0)
        gates: list[Gate] | list[DecisionGate] = verify_self_gated(model, expected=meta.skippable_blocks)
        passes = SELF_GATED_PIPELINE if passes is None else passes
    else:
        b_s = cfg_length(model) if model is not None else meta.skippable_blocks
        if full_depth_only and pareto_path is not None:
            raise CompileError("a full-depth-only bundle has one operating point: give no Pareto file",
                               setting="pareto_path")
        if full_depth_only:
            front = _one_point_front(meta, b_s)
        elif pareto_path is None:
            raise CompileError(f"{onnx_path} has skip gates read from cfg: give its Pareto file", setting="pareto_path")
        else:
            front = _check_pareto(Path(pareto_path), meta, b_s)
        # The torch-mlir front end's gates are checked on the imported module (verify-gates-mlir, always run).
        gates = verify_gates(model, expected=meta.skippable_blocks) if model is not None else []
        passes = DEFAULT_PIPELINE if passes is None else passes
    inputs, outputs = source.inputs, source.outputs
    log = CompileLog()
    if model is not None:
        log.add("check", "onnx-gates", time.perf_counter() - t0, gates=len(gates))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the serving user too
    try:
        work = tmp / ".work"
        work.mkdir()
        dump = work / "executables"
        # Every operating point of the front gets its own straight-line copy (specialize-configs).
        dump_flags = [*extra_flags, f"--iree-hal-dump-executable-binaries-to={dump}"]
        specialize = [c.mask for c in front.configs]
        if model is not None:
            flags = compile_onnx(model, board, tmp / "model.vmfb", work, b_s, passes=passes, extra_flags=dump_flags,
                                 log=log, specialize=specialize)
        else:
            assert source.mlir is not None
            flags = compile_mlir(source.mlir, board, tmp / "model.vmfb", work, b_s, passes=passes,
                                 extra_flags=dump_flags, log=log, specialize=specialize,
                                 passes_at_export=source.passes_at_export)
        executables = describe_executables(dump, board)
        front.save(tmp / "pareto.json")
        shutil.rmtree(work)
        log.add("total", "compile", time.perf_counter() - t0)
        (tmp / "compile.log").write_text(log.text())
        manifest = Manifest(
            model=meta.model, dataset=meta.dataset, normalization=meta.normalization, skippable_blocks=b_s,
            entry_function=ENTRY_FUNCTION, inputs=inputs, outputs=outputs, target=board.to_dict(),
            files={p.name: sha256_file(p) for p in sorted(tmp.iterdir())},
            block_names=tuple(meta.block_names), pareto_configs=len(front.configs), self_gated=meta.self_gated,
            compiler={"iree_version": iree_version(),
                      "flags": [f for f in flags if not f.startswith("--iree-hal-dump-executable-binaries-to")],
                      "passes": log.passes()},
            executables=tuple(executables), compile_log=tuple(log.steps))
        manifest.write(tmp)
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Bundle(out, manifest)
