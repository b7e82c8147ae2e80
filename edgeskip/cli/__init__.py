"""The ``edgeskip`` command line: a thin layer over the library.

One module per stage of the pipeline registers its commands on :data:`main`; each command
is a few lines that call a library function tests call too.
"""

from __future__ import annotations

import click
from edgeskip_runtime.errors import EdgeskipError


def option_flag(command: click.Command | None, setting: str) -> str:
    """The command-line spelling of a library setting: the option of ``command`` whose Python name it is
    (``data_dir`` -> ``--data-dir``), else the setting's name."""
    for param in getattr(command, "params", ()):
        if param.name == setting:
            return max(param.opts, key=len) if isinstance(param, click.Option) else param.human_readable_name
    return setting


class EdgeskipGroup(click.Group):
    """Shows a domain error (:class:`EdgeskipError`) as one clear line with exit code 1, naming the option it
    is about. Every other exception is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeskipError as e:
            message = str(e)
            if e.setting:
                command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
                message += f" (option {option_flag(command, e.setting)})"
            raise click.ClickException(message) from e


@click.group(cls=EdgeskipGroup)
@click.version_option(package_name="edgeskip")
def main() -> None:
    """edgeskip: one compiled model, many operating points, adaptive depth on edge boards.

    Design time: train (stochastic depth), sensitivity, pareto, figure1. Run `edgeskip demo`
    for the whole pipeline on Fashion-MNIST; `edgeskip experiment` reproduces the paper's evaluation.
    """


from edgeskip.cli import compile as compile_commands  # noqa: E402,F401  (export, compile, targets)
from edgeskip.cli import deploy as deploy_commands  # noqa: E402,F401  (board-check, deploy, rollback)
from edgeskip.cli import design, experiment, runtime  # noqa: E402,F401  (register the commands)

__all__ = ["main"]
