"""Compile a gated ONNX model with IREE for one board (Korol et al., Sec. II-A.2: ONNX -> IREE -> edge board).

The flow, with the registered :mod:`edgeskip.compiler_passes` at their stages:

1. ``onnx`` passes rewrite the model (e.g. ``channels-last-branch-weights``);
2. ``iree-import-onnx`` turns it into MLIR (``onnx.If`` -> ``torch.prim.If`` -> ``scf.if``);
3. ``iree-compile --compile-to=input``; the ``input`` passes check/rewrite that module
   (``verify-gates-mlir``, ``gate-conditions-without-host-syncs``, ``specialize-configs``);
4. with ``stream`` passes enabled, ``iree-compile --compile-from=input --compile-to=stream``
   and the passes rewrite the scheduled module (``uniform-config-transients``);
5. ``iree-compile`` from the last rewritten phase, with the board's flags, writes the ``.vmfb``.

Every step is timed and logged in :class:`CompileLog`; a failing tool's stderr is shown.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

from edgeskip.compile.errors import CompileError
from edgeskip.compiler_passes import DEFAULT_PIPELINE, CompilerPass, PassContext, get_pass
from edgeskip.targets import Target

ENTRY_FUNCTION = "main_graph"


def iree_version() -> str:
    try:
        return metadata.version("iree-base-compiler")
    except metadata.PackageNotFoundError:
        return "unknown"


def _tool(name: str) -> str:
    # The console scripts sit beside the interpreter in a venv, which need not be on PATH.
    from iree.compiler.tools.binaries import find_tool

    return find_tool(name)


@dataclass
class CompileLog:
    """What happened: passes with summaries, commands, flags and timings (written into the bundle)."""

    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, name: str, seconds: float, **info: Any) -> None:
        self.steps.append({"kind": kind, "name": name, "seconds": round(seconds, 3), **info})

    def passes(self) -> list[str]:
        return [s["name"] for s in self.steps if s["kind"] == "pass"]

    def text(self) -> str:
        lines = []
        for s in self.steps:
            extra = {k: v for k, v in s.items() if k not in ("kind", "name", "seconds")}
            lines.append(f"[{s['kind']}] {s['name']} ({s['seconds']:.2f} s) {extra if extra else ''}".rstrip())
        return "\n".join(lines) + "\n"


def _run(cmd: Sequence[str], log: CompileLog, name: str) -> None:
    t = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise CompileError(f"{name} failed (exit {proc.returncode}):\n{tail}")
    log.add("tool", name, time.perf_counter() - t, command=[Path(cmd[0]).name, *cmd[1:]])


def iree_compile(args: Sequence[str], log: CompileLog | None = None, name: str = "iree-compile") -> None:
    """Run ``iree-compile ARGS``; a failure raises CompileError with the tool's last stderr lines."""
    _run([_tool("iree-compile"), *args], log if log is not None else CompileLog(), name)


def compile_flags(target: Target, passes: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """The board's code-generation flags, then the flags the enabled passes rely on, then ``extra``."""
    flags = target.iree_flags()
    for name in passes:
        flags += [f for f in get_pass(name).iree_flags if f not in flags]
    return flags + list(extra)


def compile_onnx(model: onnx.ModelProto, target: Target, out_vmfb: Path, work_dir: Path, num_gates: int,
                 passes: Sequence[str] = DEFAULT_PIPELINE, extra_flags: Sequence[str] = (),
                 log: CompileLog | None = None, specialize: Sequence[Sequence[int]] = ()) -> list[str]:
    """Compile ``model`` (modified in place by the onnx passes) to ``out_vmfb``; returns the flags used.

    ``specialize``: configurations (the Pareto front's) that ``specialize-configs`` compiles as
    straight-line copies; every other cfg runs the gated network."""
    log = log if log is not None else CompileLog()
    ctx = _context(num_gates, specialize)
    instances = [get_pass(name) for name in passes]
    flags = compile_flags(target, passes, extra_flags)
    for p in (p for p in instances if p.stage == "onnx"):
        t = time.perf_counter()
        summary = p.run(model, ctx)
        log.add("pass", p.name, time.perf_counter() - t, stage=p.stage, **summary)
    input_path = import_to_input(model, flags, work_dir, log)
    _compile_from_input(input_path, instances, flags, out_vmfb, work_dir, ctx, log)
    return flags


def compile_mlir(mlir_path: Path, target: Target, out_vmfb: Path, work_dir: Path, num_gates: int,
                 passes: Sequence[str] = DEFAULT_PIPELINE, extra_flags: Sequence[str] = (),
                 log: CompileLog | None = None, specialize: Sequence[Sequence[int]] = (),
                 passes_at_export: Sequence[str] = ()) -> list[str]:
    """Compile a torch-mlir front-end export (torch-dialect MLIR) to ``out_vmfb``; returns the flags used.

    Its ``onnx``-stage passes ran at export in their torch form (``passes_at_export``) or do not apply (they
    are logged either way, and only the applied ones add their IREE flags); ``verify-gates-mlir`` always runs,
    as the ONNX path always checks its gates."""
    log = log if log is not None else CompileLog()
    passes = list(passes) if "verify-gates-mlir" in passes else ["verify-gates-mlir", *passes]
    effective = []
    for p in (get_pass(name) for name in passes):
        if p.stage == "onnx":
            if p.name not in passes_at_export:
                log.add("skip", p.name, 0.0, reason="an onnx pass without a torch form, or not applied at export")
                continue
            log.add("pass", p.name, 0.0, stage="torch", applied="at export, on the PyTorch module")
        effective.append(p)
    flags = compile_flags(target, [p.name for p in effective], extra_flags)
    input_path = work_dir / "model.input.mlir"
    _run([_tool("iree-compile"), *flags, "--iree-input-type=torch", "--compile-to=input", str(mlir_path),
          "-o", str(input_path)], log, "iree-compile to input")
    _compile_from_input(input_path, effective, flags, out_vmfb, work_dir, _context(num_gates, specialize), log)
    return flags


def _context(num_gates: int, specialize: Sequence[Sequence[int]]) -> PassContext:
    return PassContext(num_gates=num_gates, specialized_configs=tuple(tuple(int(v) for v in c) for c in specialize))


def _compile_from_input(input_path: Path, instances: Sequence[CompilerPass], flags: Sequence[str], out_vmfb: Path,
                        work_dir: Path, ctx: PassContext, log: CompileLog) -> None:
    """The ``input`` and ``stream`` passes, then ``iree-compile`` to the ``.vmfb``."""
    source = _run_mlir_passes([p for p in instances if p.stage == "input"], input_path,
                              work_dir / "model.input.rewritten.mlir", ctx, log)
    phase = "input"
    stream_passes = [p for p in instances if p.stage == "stream"]
    if stream_passes:
        stream_path = work_dir / "model.stream.mlir"
        to_stream = [f for f in flags if not f.startswith("--compile-to=")]  # a caller's --compile-to is for the end
        _run([_tool("iree-compile"), *to_stream, "--compile-from=input", "--compile-to=stream", str(source),
              "-o", str(stream_path)], log, "iree-compile --compile-to=stream")
        source = _run_mlir_passes(stream_passes, stream_path, work_dir / "model.stream.rewritten.mlir", ctx, log)
        phase = "stream"
    _run([_tool("iree-compile"), *flags, f"--compile-from={phase}", str(source), "-o", str(out_vmfb)], log,
         "iree-compile")


def _run_mlir_passes(passes: Sequence[CompilerPass], source: Path, out: Path, ctx: PassContext,
                     log: CompileLog) -> Path:
    """Run ``passes`` over the MLIR module in ``source``; the rewritten module's path (``source`` if none)."""
    from iree.compiler import ir

    if not passes:
        return source
    with ir.Context() as mlir_ctx:
        module = ir.Module.parse(source.read_text(), mlir_ctx)
        for p in passes:
            t = time.perf_counter()
            summary = p.run(module, ctx)
            log.add("pass", p.name, time.perf_counter() - t, stage=p.stage, **summary)
        out.write_text(str(module))
    return out


def import_to_input(model: onnx.ModelProto, flags: Sequence[str], work_dir: Path,
                    log: CompileLog | None = None) -> Path:
    """``iree-import-onnx`` then ``iree-compile --compile-to=input``: the module the ``input`` passes see."""
    log = log if log is not None else CompileLog()
    onnx_path, mlir_path, input_path = work_dir / "model.onnx", work_dir / "model.mlir", work_dir / "model.input.mlir"
    onnx.save_model(model, str(onnx_path))
    _run([sys.executable, "-m", "iree.compiler.tools.import_onnx", str(onnx_path), "-o", str(mlir_path)],
         log, "iree-import-onnx")
    _run([_tool("iree-compile"), *flags, "--compile-to=input", str(mlir_path), "-o", str(input_path)], log,
         "iree-compile to input")
    return input_path
