"""Design-time commands (Korol et al., Fig. 3, Steps 1-4): train, sensitivity, pareto, figure1, list, demo."""

from __future__ import annotations

from pathlib import Path

import click

from edgeskip.cli import main
from edgeskip.cli.common import (
    data_options,
    design_data_options,
    figure1_options,
    memory_option,
    ray_options,
    selection_precision_option,
    set_threads,
)


@main.command()
@click.option("--model", default="resnet20", show_default=True,
              help="A registered model or installed entry point (see `edgeskip list`), or your own as "
                   "package.module:factory (imported from the working directory or PYTHONPATH; see the README's "
                   "\"Your own network and data\").")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument for the model's factory (repeatable; VALUE is read as JSON where it is JSON, "
                   "e.g. width=16). in_channels and num_classes come from the data where the factory takes them.")
@click.option("--dataset", default="fashion-mnist", show_default=True,
              help="A registered dataset, or your own: npz:PATH (arrays x_train, y_train, x_test, y_test) or "
                   "folder:PATH (train/ and test/ with one sub-folder per class).")
@click.option("--recipe", default="stochastic-depth", show_default=True,
              help="standard, stochastic-depth, gated-depth (base and gated sub-paths per stage, seed 003), "
                   "gated-depth-hybrid (gated depth with stochastic depth inside the gated sub-paths: one skippable "
                   "unit per block of them), or skipnet (the baseline, trained from a standard checkpoint --from).")
@click.option("--from", "init", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="skipnet: the standard checkpoint it starts from.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="Epochs (skipnet: of its reinforcement-learning stage).")
@click.option("--sp-epochs", type=click.IntRange(min=0), default=2, show_default=True,
              help="skipnet: epochs of its supervised pre-training stage.")
@click.option("--gate-type", default=None,
              help="skipnet: ffgate1 or ffgate2 (default: SkipNet's choice for the depth).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True, help="Base learning rate.")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--schedule", default="cosine", show_default=True, help="cosine, or step (the paper's 50%/35%/15%).")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Linear learning-rate warm-up over this many epochs (deep nets such as resnet110 need about 1).")
@click.option("--p-last", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Survival probability p_L of the last block (stochastic depth, gated-depth-hybrid).")
@click.option("--gd-p-min", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="gated-depth: the lowest probability that a stage's gated sub-path runs.")
@click.option("--gd-p-max", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True,
              help="gated-depth: the highest such probability.")
@click.option("--gd-schedule", type=click.Choice(["stage", "time", "both"]), default="stage", show_default=True,
              help="gated-depth: p_s falls from p_max to p_min over the stages (stage), over training (time), or "
                   "each stage from p_max to its stage value over training (both).")
@click.option("--distill-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="gated-depth: every k-th mini-batch is a self-distillation step (full network teaches the base).")
@click.option("--distill-alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="gated-depth: weight of the base network's cross-entropy against its KL to the full network.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: mixed precision (bfloat16 autocast for the forward pass and loss, float32 weights); about "
                   "1.6-1.9x faster training on CPUs with AMX, and on recent GPUs.")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True,
              help="Train in the channels-last memory format (about 1.4x faster on CPU for these small convolutions). "
                   "Its oneDNN kernels round differently from the default layout's, and differently per batch size: "
                   "--no-channels-last for runs that must match bit for bit or across process counts.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Share of the training data held out for validation.")
@click.option("--resume", is_flag=True, help="Continue from --out if it holds an unfinished run.")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=None,
              help="Train data-parallel (DDP) in this many processes on this machine: edgeskip starts them with "
                   "torchrun --standalone. For several machines run torchrun yourself (see the README).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Checkpoint path.")
@data_options
def train(out: Path, resume: bool, nproc_per_node: int | None, threads: int | None, init: Path | None,
          sp_epochs: int, gate_type: str | None, **options) -> None:
    """Train a model (stochastic depth by default) and write a resumable checkpoint.

    Also writes OUT with suffix .metrics.jsonl: one JSON line per epoch. With --recipe skipnet, trains the
    SkipNet baseline (supervised pre-training, then hybrid RL) from the standard checkpoint --from. Under
    torchrun (or with --nproc-per-node), every process trains its share of each global batch (--batch-size)
    under DDP and rank 0 writes the checkpoint.
    """
    from edgeskip.models.reference import parse_model_args
    from edgeskip.training.distributed import launched_by_torchrun, relaunch_under_torchrun
    from edgeskip.training.trainer import TrainConfig
    from edgeskip.training.trainer import train as run_training

    if nproc_per_node is not None and not launched_by_torchrun():
        raise SystemExit(relaunch_under_torchrun(nproc_per_node, "train"))
    set_threads(threads)
    options["data_dir"] = str(options["data_dir"]) if options["data_dir"] else None
    options["model_args"] = parse_model_args(options["model_args"])
    if options["recipe"] == "skipnet":
        from edgeskip.training.skipnet import SkipNetConfig, train_skipnet

        if init is None:
            raise click.UsageError("--recipe skipnet starts from a standard checkpoint: give it with --from")
        if options["model_args"]:
            raise click.UsageError("--recipe skipnet takes its network from --from; --model-arg does not apply")
        ck = train_skipnet(SkipNetConfig(standard=str(init), gate_type=gate_type, sp_epochs=sp_epochs,
                                         rl_epochs=options["epochs"], batch_size=options["batch_size"],
                                         seed=options["seed"], device=options["device"], limit=options["limit"],
                                         data_dir=options["data_dir"], precision=options["precision"]), out)
        last = ck.metrics[-1]
        click.echo(f"wrote {out}: val accuracy {last['val_accuracy']:.4f}, "
                   f"{last['val_mean_skipped']:.2f} blocks skipped per image on average")
        return
    ck = run_training(TrainConfig(**options), out, resume=resume)
    if ck.metrics:  # rank 0 (the only rank that evaluates and writes)
        click.echo(f"wrote {out}: epoch {ck.epoch}, val accuracy {ck.metrics[-1]['val_accuracy']:.4f}")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mask", default=None, help="Skip configuration as 0/1 digits, e.g. 110111 (default: all ones).")
@data_options
def evaluate(checkpoint: Path, mask: str | None, threads, data_dir, limit, device) -> None:
    """Validation and test accuracy of a checkpoint at full depth (or under --mask)."""
    from edgeskip.design.workflow import evaluate_checkpoint

    set_threads(threads)
    bits = None
    if mask is not None:
        if not mask or set(mask) - {"0", "1"}:
            raise click.BadParameter(f"--mask must be 0/1 digits, got {mask!r}")
        bits = [int(c) for c in mask]
    r = evaluate_checkpoint(checkpoint, design_data_options(data_dir, limit, device), bits)
    click.echo(f"{r['model']} ({r['recipe']}, epoch {r['epoch']}) on {r['dataset']}, mask {r['mask']}: "
               f"val {r['val_accuracy']:.4f} (n={r['n_val']}), test {r['test_accuracy']:.4f} (n={r['n_test']})")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ranker", default="sensitivity", show_default=True,
              help="sensitivity (the paper's), l2, random, or greedy (re-rank after each removal).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random ranker.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@memory_option
@selection_precision_option
@ray_options
@data_options
def sensitivity(checkpoint: Path, ranker: str, seed: int, out: Path, threads, data_dir, limit, device,
                memory_mb: int, selection_precision: str, ray_address: str | None, ray_workers: int | None) -> None:
    """Rank skippable blocks by validation accuracy with each one skipped alone.

    Writes JSON (schema edgeskip.sensitivity/1) with per-block accuracies and the order,
    least important block first.
    """
    from edgeskip.design.workflow import sensitivity as run

    set_threads(threads)
    doc = run(checkpoint, out, design_data_options(data_dir, limit, device, memory_mb, selection_precision,
                                                   ray_address=ray_address, ray_workers=ray_workers),
              ranker=ranker, seed=seed)
    click.echo(f"wrote {out}: order {doc['order']} (baseline val accuracy {doc['baseline_accuracy']:.4f}, "
               f"{doc['precision']})")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sensitivity", "sensitivity_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output of `edgeskip sensitivity`.")
@click.option("--exhaustive/--no-exhaustive", default=None,
              help="Also evaluate all 2^B_s masks (default: when 2^B_s <= 4096).")
@click.option("--repeats", type=click.IntRange(min=1), default=30, show_default=True,
              help="Latency samples per configuration.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@memory_option
@selection_precision_option
@ray_options
@data_options
def pareto(checkpoint: Path, sensitivity_path: Path, exhaustive, repeats: int, out: Path, threads, data_dir, limit,
           device, memory_mb: int, selection_precision: str, ray_address: str | None, ray_workers: int | None) -> None:
    """Build the Pareto front (validation accuracy against latency) of skip configurations.

    Writes OUT (schema edgeskip.pareto/1) and, beside it, accuracy_vs_skipped.png and
    pareto_front.png.
    """
    from edgeskip.design.workflow import pareto as run

    set_threads(threads)
    result = run(checkpoint, sensitivity_path, out,
                 design_data_options(data_dir, limit, device, memory_mb, selection_precision,
                                     ray_address=ray_address, ray_workers=ray_workers),
                 exhaustive=exhaustive, repeats=repeats)
    click.echo(f"wrote {out}: {len(result.front.configs)} of {len(result.candidates)} candidates on the front")
    within = result.front.meta["skippable_within_points"]
    click.echo(f"blocks skippable within 1 point of full-depth test accuracy: {within['1']}, within 10 points: "
               f"{within['10']} (of {result.front.skippable_blocks})")
    if result.hypervolume_ratio is not None:
        click.echo(f"hypervolume of the sensitivity front / true front: {result.hypervolume_ratio:.4f}")


@main.command()
@click.argument("checkpoints", nargs=-1, required=True)
@figure1_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON path; the PNG is written beside it.")
@memory_option
@ray_options
@data_options
def figure1(checkpoints: tuple[str, ...], draws: int, seed: int, precision: str, out: Path, threads, data_dir,
            limit, device, memory_mb: int, ray_address: str | None, ray_workers: int | None) -> None:
    """Reproduce the paper's Figure 1: accuracy against skipped blocks for several checkpoints.

    CHECKPOINTS are LABEL=PATH pairs (or plain paths, labelled by their recipe), e.g.
    `stochastic-depth=runs/sd/model.pt standard=runs/std/model.pt`.
    """
    from edgeskip.design.workflow import figure1 as run
    from edgeskip.training.checkpoint import load_checkpoint

    set_threads(threads)
    labelled = {}
    for item in checkpoints:
        label, sep, path = item.partition("=")
        labelled[label if sep else load_checkpoint(item).recipe] = path if sep else item
    doc = run(labelled, out, design_data_options(data_dir, limit, device, memory_mb, report_precision=precision,
                                                 ray_address=ray_address, ray_workers=ray_workers),
              draws=draws, seed=seed)
    for m in doc["models"]:
        click.echo(f"{m['label']}: mean accuracy loss over N = {m['mean_accuracy_loss']:.4f}")


@main.command("list")
def list_registered() -> None:
    """List the registered models, datasets, recipes, schedules, rankers and export front ends."""
    from edgeskip.compile.export import FRONTENDS
    from edgeskip.data import list_datasets
    from edgeskip.design.sensitivity import RANKERS
    from edgeskip.models import list_model_references
    from edgeskip.training.recipes import RECIPES
    from edgeskip.training.schedules import SCHEDULES

    for kind, names in [("models", [*list_model_references(), "package.module:factory (your own)"]),
                        ("datasets", list_datasets()),
                        ("recipes", [*RECIPES.names(), "skipnet (from a standard checkpoint)"]),
                        ("schedules", SCHEDULES.names()), ("rankers", RANKERS.names()),
                        ("front ends", FRONTENDS.names())]:
        click.echo(f"{kind}: {', '.join(names)}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--train", "retrain", is_flag=True, help="Retrain both models instead of using the shipped checkpoints.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Epochs with --train.")
@click.option("--full", is_flag=True, help="Evaluate on the whole validation and test splits (slower).")
@click.option("--design-only", is_flag=True, help="Stop after the design-time steps (no compile or serving).")
@click.option("--requests", type=click.IntRange(min=10), default=300, show_default=True,
              help="Requests of the paper workload in the serving step.")
@data_options
def demo(out: Path, retrain: bool, epochs: int, full: bool, design_only: bool, requests: int, threads, data_dir,
         limit, device) -> None:
    """Run the whole pipeline on Fashion-MNIST with the shipped ResNet-20 checkpoints.

    Design time (sensitivity, Pareto front with exhaustive search, Figure 1), export to ONNX,
    IREE compilation for the host and the Odroid XU4, profiling on this machine, then the
    adaptive server on loopback under the paper's workload against static no-skip, with the
    Table I ratios. Results go to OUT. Evaluation uses 2000 samples per split unless --full
    or --limit is given.
    """
    from edgeskip.demo import run_demo

    set_threads(threads)
    run_demo(out, retrain=retrain, epochs=epochs, limit=None if full else (limit or 2000), device=device,
             data_dir=data_dir, serve=not design_only, requests=requests)
