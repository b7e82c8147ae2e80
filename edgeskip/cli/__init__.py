"""The ``edgeskip`` command line: a thin layer over the library.

One module per stage of the pipeline registers its commands on :data:`main`; each command
is a few lines that call a library function tests call too.
"""

from __future__ import annotations

import click

from edgeskip.registry import UnknownNameError


class EdgeskipGroup(click.Group):
    """Turns the library's known errors into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        from edgeskip.errors import USER_ERRORS

        try:
            return super().invoke(ctx)
        except (UnknownNameError, *USER_ERRORS) as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=EdgeskipGroup)
@click.version_option(package_name="edgeskip")
def main() -> None:
    """edgeskip: one compiled model, many operating points, adaptive depth on edge boards.

    Design time: train (stochastic depth), sensitivity, pareto, figure1. Run `edgeskip demo`
    for the whole pipeline on Fashion-MNIST.
    """


from edgeskip.cli import compile as compile_commands  # noqa: E402,F401  (export, compile, targets)
from edgeskip.cli import deploy as deploy_commands  # noqa: E402,F401  (board-check, deploy, rollback)
from edgeskip.cli import design, runtime  # noqa: E402,F401  (register the commands)

__all__ = ["main"]
