"""Options and helpers shared by the ``edgeskip`` commands."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click


def data_options(f):
    """Options every data-touching command shares."""
    f = click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")(f)
    f = click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use at most N samples of each split (quick runs).")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Dataset folder (default: the dataset's standard location).")(f)
    f = click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="CPU threads for PyTorch (default: all cores).")(f)
    return f


def set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def design_data_options(data_dir: Path | None, limit: int | None, device: str, memory_mb: int | None = None,
                        selection_precision: str | None = None, report_precision: str | None = None,
                        ray_address: str | None = None, ray_workers: int | None = None):
    """The design-time data settings of a command's options (None: the library's default)."""
    from edgeskip.design.workflow import DataOptions

    options = DataOptions(data_dir=data_dir, limit=limit, device=device)
    given = {"memory_mb": memory_mb, "selection_precision": selection_precision, "report_precision": report_precision,
             "ray_address": ray_address, "ray_workers": ray_workers}
    return replace(options, **{k: v for k, v in given.items() if v is not None})


def memory_option(f):
    """The design-time engine's memory bound (sensitivity, pareto, figure1)."""
    return click.option("--memory-mb", type=click.IntRange(min=1), default=1024, show_default=True,
                        help="Activations the engine keeps to share work between configurations; beyond this it "
                             "recomputes them (slower, never more memory).")(f)


def ray_options(f):
    """Split the configurations over a Ray cluster (sensitivity, pareto, figure1)."""
    f = click.option("--ray-workers", type=click.IntRange(min=1), default=None,
                     help="Ray workers (actors, one CPU each; default: the cluster's CPUs).")(f)
    return click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                        help="Evaluate the configurations on Ray: --ray alone (or --ray local) starts Ray on this "
                             "machine; --ray ADDRESS (ray://head:10001 or head:6379) joins a running cluster, whose "
                             "nodes need the dataset at the same path. Accuracies equal a local run's.")(f)


def selection_precision_option(f):
    """The precision of the validation evaluations that select (sensitivity, pareto)."""
    return click.option("--selection-precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
                        show_default=True,
                        help="Precision of the validation evaluations that rank and select (test accuracies are always "
                             "float32). auto: bf16 where the CPU computes it natively (AMX, AVX512-BF16; 4-5x faster "
                             "here, validation accuracies within about 0.1 point), else fp32.")(f)


def figure1_options(f):
    """The random configurations of Figure 1 (``figure1`` and ``experiment figure1``) and their precision."""
    f = click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="fp32", show_default=True,
                     help="Precision of the figure's test evaluations. bf16 is 4-5x faster on CPUs with AMX or "
                          "AVX512-BF16 and moves an accuracy by about 0.1 point (at most 0.6 measured), far below "
                          "the spreads the figure shows; the JSON records it.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    return click.option("--draws", type=click.IntRange(min=1), default=100, show_default=True,
                        help="Random configurations per number of skipped blocks (per model).")(f)
