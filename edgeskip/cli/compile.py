"""Compile-time commands (Korol et al., Sec. II-A.2, Step 2 of Fig. 3 and deployment): export, compile, targets."""

from __future__ import annotations

from pathlib import Path

import click

from edgeskip.cli import main


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write: MODEL.onnx, or MODEL.mlir with --frontend torch-mlir.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Static batch size of the exported model.")
@click.option("--frontend", type=click.Choice(["onnx", "torch-mlir"]), default="onnx", show_default=True,
              help="onnx: the gated ONNX model. torch-mlir: torch-dialect MLIR straight from torch.export, each "
                   "gate a torch.prim.If (needs `pip install --no-deps torch-mlir==20261001`).")
def export(checkpoint: Path, out: Path, batch_size: int, frontend: str) -> None:
    """Export a checkpoint as the gated model (inputs image and cfg, one If per gate): ONNX (opset 18) by
    default, or torch-dialect MLIR with --frontend torch-mlir. `edgeskip compile` takes either."""
    from edgeskip.compile.export import export_checkpoint

    result = export_checkpoint(checkpoint, out, batch_size=batch_size, frontend=frontend)
    checked = "verified" if frontend == "onnx" else "checked when compiled (verify-gates-mlir)"
    click.echo(f"wrote {out}: {result.metadata.model}, {result.num_gates} gates (B_s), {checked}")


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", required=True, help="Board to compile for (see `edgeskip targets`).")
@click.option("--pareto", "pareto_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output of `edgeskip pareto` for this model (not for a self-gated SkipNet export).")
@click.option("--full-depth-only", is_flag=True,
              help="Compile one operating point, every block running, instead of a Pareto front: the paper's "
                   "Original baseline (e.g. from a standard checkpoint) for `edgeskip experiment`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Bundle folder.")
@click.option("--passes", default=None,
              help="Comma-separated compiler passes (default: all of the default pipeline; '' for none). "
                   "Leaving out specialize-configs compiles faster and smaller, but every configuration "
                   "then pays the per-gate overhead.")
def compile_model(model: Path, target: str, pareto_path: Path, full_depth_only: bool, out: Path,
                  passes: str | None) -> None:
    """Compile a gated MODEL (ONNX, or .mlir from `export --frontend torch-mlir`) with IREE for a board and
    write a bundle folder.

    The bundle holds model.vmfb, pareto.json, compile.log and manifest.json (edgeskip.bundle/1).
    Every configuration of the Pareto file is compiled as its own straight-line copy of the
    network (specialize-configs); any other cfg still runs, through the gates.
    """
    from edgeskip.compile.bundle import build_bundle
    from edgeskip.compiler_passes import get_pass
    from edgeskip.targets import get_target

    board = get_target(target)  # fail on an unknown board before any work
    names = None if passes is None else tuple(p for p in passes.split(",") if p)
    for name in names or ():
        get_pass(name)
    bundle = build_bundle(model, board, pareto_path, out, passes=names, full_depth_only=full_depth_only)
    m = bundle.manifest
    click.echo(f"wrote {out}: {m.model} for {board.name} ({board.triple}, {board.cpu}), "
               f"passes: {', '.join(m.compiler['passes']) or 'none'}")


@main.command("targets")
def list_boards() -> None:
    """List the boards edgeskip compiles for."""
    from edgeskip.targets import get_target, list_targets

    for name in list_targets():
        t = get_target(name)
        click.echo(f"{name}: {t.description} [{t.triple}, cpu {t.cpu}]")
