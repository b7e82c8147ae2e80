"""``edgeskip experiment``: the paper's evaluation (Korol et al., Sec. III-C) as commands: Figure 1,
Figure 6 and Table I, each writing JSON, a PNG and markdown with the paper's numbers beside ours."""

from __future__ import annotations

from pathlib import Path

import click

from edgeskip.cli import EdgeskipGroup, main
from edgeskip.cli.common import data_options, design_data_options, figure1_options, memory_option, set_threads

_bundle = click.Path(exists=True, file_okay=False, path_type=Path)


@main.group(cls=EdgeskipGroup)
def experiment() -> None:
    """Reproduce the paper's evaluation: figure1, figure6, table1; and compare training recipes (recipes).

    Typical inputs, for one model: the stochastic-depth and standard checkpoints (figure1); the Ours
    bundle (`edgeskip compile --pareto`, profiled), the Original bundle (the standard checkpoint,
    `edgeskip compile --full-depth-only`) and the SkipNet bundle (a `--recipe skipnet` checkpoint,
    exported and compiled) for figure6 and table1.
    """


@experiment.command("figure1")
@click.argument("stochastic_depth", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("standard", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@figure1_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for figure1.json, figure1.png and figure1.md.")
@memory_option
@data_options
def figure1_command(stochastic_depth: Path, standard: Path, draws: int, seed: int, precision: str, out: Path,
                    threads, data_dir, limit, device, memory_mb: int) -> None:
    """Figure 1: accuracy against skipped blocks, STOCHASTIC_DEPTH against STANDARD checkpoint (test split)."""
    from edgeskip.experiments.figure1 import comparison_n, figure1

    set_threads(threads)
    doc = figure1(stochastic_depth, standard, out,
                  design_data_options(data_dir, limit, device, memory_mb, report_precision=precision),
                  draws=draws, seed=seed)
    n = comparison_n(len(doc["models"][0]["curve"]) - 1)
    for m in doc["models"]:
        click.echo(f"{m['label']}: best minus worst configuration at N = {n}: "
                   f"{100 * m['curve'][n]['spread']:.2f} points")
    click.echo(f"wrote {out}/figure1.json, figure1.png, figure1.md")


@experiment.command("figure6")
@click.option("--ours", type=_bundle, required=True, help="The stochastic-depth Pareto bundle.")
@click.option("--original", type=_bundle, required=True, help="The full-depth-only bundle of the standard model.")
@click.option("--skipnet", type=_bundle, required=True, help="The self-gated SkipNet bundle.")
@click.option("--skipnet-checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="SkipNet's checkpoint: adds its skipped blocks per input (eager decisions) to the report.")
@click.option("--repeats", type=click.IntRange(min=3), default=50, show_default=True,
              help="Rounds of the side-by-side latency measurement.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use the first N test images.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder (default: the dataset's standard location).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for figure6.json, figure6.png and figure6.md.")
def figure6_command(ours: Path, original: Path, skipnet: Path, skipnet_checkpoint: Path | None, repeats: int,
                    limit: int | None, data_dir: Path | None, out: Path) -> None:
    """Figure 6: accuracy, energy per inference and speedup over Original against skipped blocks."""
    from edgeskip.experiments.figure6 import figure6

    doc = figure6(ours, original, skipnet, out, skipnet_checkpoint=skipnet_checkpoint,
                  data_dir=str(data_dir) if data_dir else None, limit=limit, repeats=repeats)
    at = doc["ours_overtakes_skipnet_at"]
    click.echo(f"SkipNet: {100 * doc['skipnet']['test_accuracy']:.2f} %, {doc['skipnet']['speedup']:.2f}x over "
               f"Original; Ours faster than SkipNet " + (f"from {at} skipped blocks" if at is not None else "nowhere"))
    click.echo(f"wrote {out}/figure6.json, figure6.png, figure6.md")


@experiment.command("table1")
@click.option("--ours", type=_bundle, required=True, help="The stochastic-depth Pareto bundle (Algorithm 1).")
@click.option("--original", type=_bundle, required=True, help="The full-depth-only bundle of the standard model.")
@click.option("--skipnet", type=_bundle, required=True, help="The self-gated SkipNet bundle.")
@click.option("--path", "paths", multiple=True, type=click.Choice(["in-process", "http"]),
              help="Where requests go (repeatable; default: both).")
@click.option("--regime", "regimes", multiple=True,
              help="Load regimes of `bench --sweep` (repeatable; default: all), e.g. 'period x0.6', phased.")
@click.option("--requests", type=click.IntRange(min=10), default=200, show_default=True, help="Requests per run.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per system and regime, alternating order, pooled.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder (default: the dataset's standard location).")
@click.option("--min-acc", type=click.FloatRange(0, 1), default=None,
              help="Ours: Algorithm 1's accuracy floor, a validation accuracy in [0, 1] (default: the runtime's, "
                   "no-skip accuracy - 0.10).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for table1.json, table1.md and table1.png.")
def table1_command(ours: Path, original: Path, skipnet: Path, paths: tuple[str, ...], regimes: tuple[str, ...],
                   requests: int, repeats: int, seed: int, data_dir: Path | None, min_acc: float | None,
                   out: Path) -> None:
    """Table I: SkipNet and Ours against Original on the same seeded workloads, in-process and over HTTP."""
    from edgeskip.experiments.table1 import PATHS, table1

    doc = table1(ours, original, skipnet, out, paths=paths or PATHS, regimes=regimes or None, requests=requests,
                 repeats=repeats, seed=seed, data_dir=str(data_dir) if data_dir else None,
                 ours_settings={"min_acc": min_acc} if min_acc is not None else None)
    if doc["best"]:
        b = doc["best"]
        click.echo(f"best for Ours: {b['path']} {b['regime']}: {b['processed_inferences_x']:.2f}x processed at "
                   f"{b['accuracy_change_points']:+.2f} points")
    click.echo(f"wrote {out}/table1.json, table1.md, table1.png")


def _labelled(items: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise click.BadParameter(f"{item!r}: give LABEL=PATH", param_hint=what)
        if not Path(path).exists():
            raise click.BadParameter(f"{path} does not exist", param_hint=what)
        out[label] = path
    return out


@experiment.command("recipes")
@click.option("--checkpoint", "checkpoints", multiple=True, required=True, metavar="LABEL=PATH",
              help="A system's checkpoint (repeatable), e.g. gated-depth=runs/gd/model.pt.")
@click.option("--front", "fronts", multiple=True, required=True, metavar="LABEL=PATH",
              help="The same system's profiled bundle folder, or a pareto.json (repeatable).")
@click.option("--samples", type=click.IntRange(min=1), default=256, show_default=True,
              help="Configurations evaluated per system: all of them where they are no more than this, else this "
                   "many uniform draws.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for recipes.json, recipes.png and recipes.md.")
@memory_option
@data_options
def recipes_command(checkpoints: tuple[str, ...], fronts: tuple[str, ...], samples: int, seed: int, out: Path,
                    threads, data_dir, limit, device, memory_mb: int) -> None:
    """Compare training recipes of one network: full-depth accuracy, accuracy over the configurations,
    Pareto fronts with hypervolume, accuracy at matched MACs."""
    from edgeskip.experiments.recipes import compare_recipes

    set_threads(threads)
    doc = compare_recipes(_labelled(checkpoints, "--checkpoint"), _labelled(fronts, "--front"), out,
                          design_data_options(data_dir, limit, device, memory_mb), samples=samples, seed=seed)
    for label, s in doc["systems"].items():
        c = s["configurations"]
        click.echo(f"{label}: full depth {100 * s['full_depth_test_accuracy']:.2f} %, {c['count']} configurations "
                   f"{100 * c['mean']:.2f} +- {100 * c['std']:.2f} %, hypervolume {s['hypervolume']:.4f}")
    click.echo(f"wrote {out}/recipes.json, recipes.png, recipes.md")
