"""Fleet deploys over real ssh: three throwaway sshd instances on loopback are three boards, each with its own deploy
directory and server port, the real server behind each. One board is made to fail (its server port is taken), and
the rollout must follow the canary rule, stop at the failure budget, and leave the failed board serving what it
served before (README, "Deploy to a fleet")."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SSHServer
from test_deploy import READY_TIMEOUT, SERVE, Board, bid, no_skip_accuracy, variant

from edgeskip.cli import main
from edgeskip.deploy.fleet import FLEET_SCHEMA, FleetBoard, load_fleet


@pytest.fixture(scope="module")
def fleet_bundles(bundles, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    old = bundles("host").path
    return old, variant(old, tmp_path_factory.mktemp("new") / "bundle", 0.77)


@pytest.fixture
def boards(tmp_path: Path):
    """Three boards, each behind its own sshd on loopback, all reached with the first one's key (as a fleet is)."""
    servers = [SSHServer(tmp_path / f"sshd-{i}") for i in range(3)]
    key = Path(f"{servers[0].user_key}.pub").read_text()
    for s in servers[1:]:
        (s.root / "authorized_keys").write_text(key)
    (tmp_path / "known_hosts").write_text("".join(s.known_hosts.read_text() for s in servers))
    made = [Board(server, tmp_path / f"board-{i}") for i, server in enumerate(servers)]
    yield made
    for b in made:
        b.stop()
    for s in servers:
        s.stop()


def fleet_file(path: Path, boards: list[Board]) -> Path:
    path.write_text(json.dumps({"schema": FLEET_SCHEMA, "boards": [
        {"board": b.sshd.board, "dir": str(b.dir), "port": b.port} for b in boards]}))
    return path


def fleet_deploy(bundle: Path, fleet: Path, boards: list[Board], *extra: str):
    ssh = ["-i", str(boards[0].sshd.user_key)]
    for option in (f"UserKnownHostsFile={fleet.parent / 'known_hosts'}", "GlobalKnownHostsFile=/dev/null",
                   "IdentitiesOnly=yes"):
        ssh += ["--ssh-option", option]
    return CliRunner().invoke(main, ["deploy", str(bundle), "--fleet", str(fleet), "--service-command", SERVE,
                                     "--python", sys.executable, "--ready-timeout", READY_TIMEOUT, *ssh, *extra],
                              catch_exceptions=False)


def serving(board: Board) -> float | None:
    return no_skip_accuracy(board.port) if board.ready() else None


@pytest.fixture
def deployed(boards: list[Board], fleet_bundles, tmp_path: Path) -> Path:
    """Every board serves the old bundle (accuracy 0.9): itself a fleet deploy that must succeed."""
    old, _ = fleet_bundles
    fleet = fleet_file(tmp_path / "fleet.json", boards)
    r = fleet_deploy(old, fleet, boards, "--summary-json", str(tmp_path / "first.json"))
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "first.json").read_text())
    assert summary["ok"] and [b["status"] for b in summary["boards"]] == ["deployed"] * 3
    assert [b["role"] for b in summary["boards"]] == ["canary", "rollout", "rollout"]
    assert all(serving(b) == pytest.approx(0.9) for b in boards)
    return fleet


def block_port(board: Board) -> socket.socket:
    """Something else listens on the board's server port: the new server cannot start there, so the board's
    deploy fails its readiness wait and rolls back."""
    board.stop()  # the old server releases the port first (it may take a moment to exit)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 10
    while True:
        try:
            s.bind(("127.0.0.1", board.port))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    s.listen()
    return s


def rollout_with_a_board_down(boards: list[Board], down: int, bundle: Path, fleet: Path, summary: Path, *extra: str):
    """Deploy ``bundle`` to the fleet while board ``down`` cannot serve; the CLI result and its JSON summary."""
    blocker = block_port(boards[down])
    try:
        r = fleet_deploy(bundle, fleet, boards, *extra, "--summary-json", str(summary))
    finally:
        blocker.close()
    return r, json.loads(summary.read_text())


def test_a_failing_board_beyond_the_budget_stops_the_rollout(boards, fleet_bundles, deployed: Path,
                                                             tmp_path: Path) -> None:
    r, summary = rollout_with_a_board_down(boards, 1, fleet_bundles[1], deployed, tmp_path / "s.json",
                                           "--parallel", "1", "--max-failures", "0")
    assert r.exit_code == 1, r.output
    assert [b["status"] for b in summary["boards"]] == ["deployed", "failed", "skipped"]
    assert "rolled back" in summary["boards"][1]["message"] and "failure budget" in summary["boards"][2]["message"]
    assert "more than --max-failures 0" in summary["stopped"] and "rollout stopped" in r.output
    assert serving(boards[0]) == pytest.approx(0.77)  # the canary took the new bundle
    assert boards[1].link("current") == f"bundles/{bid(fleet_bundles[0])}"  # rolled back to the old one
    assert boards[2].link("current") == f"bundles/{bid(fleet_bundles[0])}" and serving(boards[2]) == pytest.approx(0.9)


def test_within_the_budget_the_rest_is_deployed(boards, fleet_bundles, deployed: Path, tmp_path: Path) -> None:
    r, summary = rollout_with_a_board_down(boards, 1, fleet_bundles[1], deployed, tmp_path / "s.json",
                                           "--max-failures", "1")
    assert r.exit_code == 1  # a board failed, so the fleet is not whole, but the rollout went on
    assert [b["status"] for b in summary["boards"]] == ["deployed", "failed", "deployed"] and summary["stopped"] is None
    assert serving(boards[2]) == pytest.approx(0.77)


def test_a_failing_canary_touches_no_other_board(boards, fleet_bundles, deployed: Path, tmp_path: Path) -> None:
    new = fleet_bundles[1]
    r, summary = rollout_with_a_board_down(boards, 0, new, deployed, tmp_path / "s.json", "--max-failures", "5")
    assert r.exit_code == 1
    assert [b["status"] for b in summary["boards"]] == ["failed", "skipped", "skipped"]
    assert "canary" in summary["stopped"] and "no other board was touched" in summary["stopped"]
    for b in boards[1:]:
        assert b.link("current") == f"bundles/{bid(fleet_bundles[0])}" and b.link("previous") is None
        assert not (b.dir / "bundles" / bid(new)).exists() and serving(b) == pytest.approx(0.9)


def test_fleet_files_and_board_lists_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "fleet.json"
    good.write_text(json.dumps({"schema": FLEET_SCHEMA, "boards": ["pi@a.local", {"board": "pi@b:2222", "port": 81}]}))
    assert load_fleet(good) == [FleetBoard("pi@a.local"), FleetBoard("pi@b:2222", None, 81)]
    for doc, message in [({"boards": []}, "not an edgeskip.fleet/1"),
                         ({"schema": FLEET_SCHEMA, "boards": [{"board": "pi@a", "speed": 3}]}, "a board is"),
                         ({"schema": FLEET_SCHEMA, "boards": [{"board": "pi@a", "port": 70000}]}, "not a TCP port")]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(doc))
        with pytest.raises(Exception, match=message):
            load_fleet(bad)
    r = CliRunner().invoke(main, ["deploy", str(tmp_path), "--board", "pi@a", "--board", "pi@a"])
    assert r.exit_code != 0 and "named twice" in r.output
