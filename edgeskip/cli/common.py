"""Options and helpers shared by the ``edgeskip`` commands."""

from __future__ import annotations

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
