"""Board commands (README, "Deploy to a board"; the runtime runs on the board, Korol et al., Sec. II-B / III-B):
``board-check``, ``deploy`` and ``rollback``, all over the system ``ssh`` client.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeskip.cli import main
from edgeskip.deploy.deploy import DEFAULT_DIR, DEFAULT_READY_TIMEOUT
from edgeskip.deploy.services import list_service_managers
from edgeskip.deploy.ssh import DEFAULT_CONNECT_TIMEOUT, SSHRunner, SSHTarget


def ssh_options(f):
    """How every board command reaches the board (on top of ~/.ssh/config, known_hosts and ssh-agent)."""
    f = click.option("--connect-timeout", type=click.IntRange(min=1), default=DEFAULT_CONNECT_TIMEOUT,
                     show_default=True, help="Seconds to wait for the board to answer.")(f)
    f = click.option("--accept-new-host-key", is_flag=True,
                     help="Trust the host key of a board seen for the first time (StrictHostKeyChecking=accept-new); "
                          "a changed key is still refused.")(f)
    f = click.option("--ssh-option", "ssh_option", multiple=True, metavar="KEY=VALUE",
                     help="Passed to ssh as -o KEY=VALUE (repeatable).")(f)
    f = click.option("--identity", "-i", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="Private key file (ssh -i).")(f)
    return f


def make_runner(board: str, identity: str | None, ssh_option: tuple[str, ...], accept_new_host_key: bool,
                connect_timeout: int) -> SSHRunner:
    return SSHRunner(SSHTarget.parse(board), identity=identity, options=tuple(ssh_option),
                     accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)


def _service_settings(dir: str, service: str | None, service_command: str | None, host: str, port: int,
                      python: str | None, serve_arg: tuple[str, ...]):
    from edgeskip.deploy.services import ServiceSettings

    manager = service or ("command" if service_command else "systemd")
    if service_command and manager != "command":
        raise click.UsageError("--service-command needs --service command")
    return ServiceSettings(dir=dir, manager=manager, host=host, port=port, python=python, command=service_command,
                           serve_args=serve_arg)


@main.command("board-check")
@click.argument("board")
@ssh_options
@click.option("--python", default="python3", show_default=True, help="The board's Python interpreter.")
@click.option("--dir", "dir_", default=DEFAULT_DIR, show_default=True, help="Deploy directory to report on.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def board_check(board: str, python: str, dir_: str, as_json: bool, **ssh) -> None:
    """Report what BOARD (user@host[:port]) is: architecture, CPU, big/LITTLE cores, Python, runtime packages,
    the deployed bundle and which `edgeskip targets` entry matches."""
    from edgeskip.deploy.board import describe, probe_board

    facts = probe_board(make_runner(board, **ssh), python=python, dir=dir_)
    click.echo(json.dumps(facts.to_dict(), indent=2) if as_json else describe(facts))


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--board", "boards", multiple=True, metavar="USER@HOST[:PORT]",
              help="A board (repeatable: several boards are a fleet deploy, the first the canary).")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A fleet file (edgeskip.fleet/1 JSON: boards, each with optional dir and port), after any --board.")
@click.option("--canary", type=click.IntRange(min=1), default=1, show_default=True,
              help="Fleet: boards deployed first, one by one; if one fails, no other board is touched.")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="Fleet: boards deployed at once after the canary.")
@click.option("--max-failures", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fleet: failed boards tolerated after the canary; one more stops the rollout (boards not started "
                   "are skipped; each failed board rolled itself back).")
@click.option("--dir", "dir_", default=DEFAULT_DIR, show_default=True,
              help="Deploy directory on the board (bundles/, current, previous).")
@click.option("--no-service", is_flag=True, help="Only stage, verify and switch `current`; restart nothing.")
@click.option("--service", type=click.Choice(list_service_managers()), default=None,
              help="Service manager [default: systemd, or command with --service-command].")
@click.option("--service-command", default=None,
              help="command manager: the server's command line; {current}, {port}, {host}, {dir}, {python} "
                   "are filled in.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server binds on the board.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--python", default=None,
              help="The board's Python [default: edgeskip-runtime on PATH, else python3].")
@click.option("--serve-arg", multiple=True, help="Extra argument for `edgeskip-runtime serve` (repeatable).")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=DEFAULT_READY_TIMEOUT, show_default=True,
              help="Seconds to wait for GET /v2/health/ready before rolling back.")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fleet: also write the per-board summary as JSON.")
@ssh_options
def deploy(bundle: Path, boards: tuple[str, ...], fleet_file: Path | None, canary: int, parallel: int,
           max_failures: int, dir_: str, no_service: bool, service: str | None, service_command: str | None,
           host: str, port: int, python: str | None, serve_arg: tuple[str, ...], ready_timeout: float,
           summary_json: Path | None, **ssh) -> None:
    """Put BUNDLE on a board (or a fleet) and serve it, rolling back a board that does not become ready.

    Refuses a bundle for another architecture; uploads to DIR/staging/<id>, verifies every
    sha256 on the board, moves it to DIR/bundles/<id>, switches DIR/current atomically (the
    old one stays as DIR/previous), restarts the service and waits for /v2/health/ready.
    Several boards (--board ... --board ..., or --fleet) deploy the canary first, then the rest
    in parallel, stopping when more than --max-failures fail; a per-board summary follows.
    """
    from edgeskip.deploy.deploy import deploy as run_deploy
    from edgeskip.deploy.fleet import FleetBoard, deploy_fleet, load_fleet

    def settings_for(board: FleetBoard):
        return None if no_service else _service_settings(board.dir or dir_, service, service_command, host,
                                                         board.port or port, python, serve_arg)

    fleet = [FleetBoard(b) for b in boards] + (load_fleet(fleet_file) if fleet_file else [])
    if not fleet:
        raise click.UsageError("name the board with --board USER@HOST[:PORT] (or several, or --fleet FILE)")
    if len(fleet) == 1 and fleet_file is None:
        board = fleet[0]
        result = run_deploy(bundle, make_runner(board.board, **ssh), settings_for(board), dir=dir_,
                            ready_timeout=ready_timeout, log=lambda m: click.echo(m, err=True))
        click.echo(f"deployed {result.bundle_id} to {result.board}:{dir_}: {result.message}"
                   + (f"; previous: {result.previous}" if result.previous else ""))
        return
    outcome = deploy_fleet(bundle, fleet, lambda b: make_runner(b.board, **ssh), settings_for, canary=canary,
                           parallel=parallel, max_failures=max_failures, default_dir=dir_,
                           ready_timeout=ready_timeout, log=lambda m: click.echo(m, err=True))
    click.echo(outcome.summary())
    if summary_json is not None:
        from edgeskip_runtime.atomic import write_json

        write_json(summary_json, outcome.to_dict())
    if not outcome.ok:
        raise SystemExit(1)


@main.command()
@click.option("--board", required=True, help="user@host[:port]")
@click.option("--dir", "dir_", default=DEFAULT_DIR, show_default=True)
@click.option("--no-service", is_flag=True, help="Only switch the links; restart nothing.")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=DEFAULT_READY_TIMEOUT, show_default=True)
@ssh_options
def rollback(board: str, dir_: str, no_service: bool, ready_timeout: float, **ssh) -> None:
    """Switch a board back to the previous bundle (DIR/previous) and restart the service with the
    settings of the last deploy; if the previous one does not become ready, go back again."""
    from edgeskip.deploy.deploy import rollback as run_rollback

    result = run_rollback(make_runner(board, **ssh), dir=dir_, ready_timeout=ready_timeout, restart=not no_service)
    click.echo(f"rolled back {result.board}:{dir_}: {result.message}"
               + (f"; previous: {result.previous}" if result.previous else ""))
