"""Deploying one bundle to a fleet of boards: a canary first, then the rest in parallel, within a failure budget.

Every board gets the single-board deploy of :mod:`edgeskip.deploy.deploy` (architecture check, verified upload,
transactional switch, readiness wait, rollback on failure), so a board that fails is left serving what it served
before. The fleet adds the rollout rules that serving on many boards needs (README, "Deploy to a fleet"):

1. **Canary**: the first ``canary`` boards are deployed one after another and must become ready. If one fails,
   the rollout stops and no other board is touched.
2. **The rest** are deployed in parallel, at most ``parallel`` at a time.
3. **Failure budget**: when more than ``max_failures`` of them have failed, no further board is started; boards
   already in flight finish (each is transactional on its own). The boards not started are reported as skipped.

The bundle is verified once, here, before any board is contacted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeskip_runtime.errors import EdgeskipError, UsageError

from edgeskip.deploy.deploy import DEFAULT_DIR, DEFAULT_READY_TIMEOUT, LocalBundle, deploy
from edgeskip.deploy.services import ServiceSettings
from edgeskip.deploy.ssh import SSHRunner, SSHTarget

FLEET_SCHEMA = "edgeskip.fleet/1"


@dataclass(frozen=True)
class FleetBoard:
    """One board of the fleet; ``dir`` and ``port`` (the server's) default to the command's options."""

    board: str  # user@host[:port]
    dir: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        SSHTarget.parse(self.board)  # a malformed address fails before any board is contacted
        if self.port is not None and not 1 <= self.port <= 65535:
            raise UsageError(f"board {self.board}: port {self.port} is not a TCP port", setting="fleet")


def load_fleet(path: str | Path) -> list[FleetBoard]:
    """Read a fleet file (schema ``edgeskip.fleet/1``)::

        {"schema": "edgeskip.fleet/1",
         "boards": ["odroid@xu4-a.local", {"board": "pi@rpi4-b.local:2222", "dir": "/srv/edgeskip", "port": 8001}]}
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"fleet file {path} does not exist", setting="fleet") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"fleet file {path} is not valid JSON: {e}", setting="fleet") from e
    if not isinstance(doc, dict) or doc.get("schema") != FLEET_SCHEMA or not isinstance(doc.get("boards"), list):
        raise UsageError(f"fleet file {path} is not an {FLEET_SCHEMA} file with a list of boards", setting="fleet")
    boards = []
    for entry in doc["boards"]:
        if isinstance(entry, str):
            boards.append(FleetBoard(entry))
        elif isinstance(entry, dict) and set(entry) <= {"board", "dir", "port"} and isinstance(entry.get("board"), str):
            boards.append(FleetBoard(entry["board"], entry.get("dir"), entry.get("port")))
        else:
            raise UsageError(f"fleet file {path}: a board is \"user@host[:port]\" or {{\"board\", \"dir\", \"port\"}}, "
                             f"not {entry!r}", setting="fleet")
    return boards


@dataclass
class BoardOutcome:
    board: str
    role: str  # canary or rollout
    status: str  # deployed, failed, skipped
    message: str
    seconds: float = 0.0
    bundle_id: str | None = None


@dataclass
class FleetResult:
    bundle_id: str
    outcomes: list[BoardOutcome] = field(default_factory=list)
    stopped: str | None = None  # why the rollout stopped early, if it did

    @property
    def ok(self) -> bool:
        return self.stopped is None and all(o.status == "deployed" for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle_id": self.bundle_id, "ok": self.ok, "stopped": self.stopped,
                "boards": [asdict(o) for o in self.outcomes]}

    def summary(self) -> str:
        """A table, one line per board, then the verdict."""
        width = max(len(o.board) for o in self.outcomes)
        lines = [f"{'board':<{width}}  {'role':<7}  {'result':<8}  {'time':>6}  message"]
        lines += [f"{o.board:<{width}}  {o.role:<7}  {o.status:<8}  {o.seconds:5.1f}s  {o.message}"
                  for o in self.outcomes]
        counts = {s: sum(o.status == s for o in self.outcomes) for s in ("deployed", "failed", "skipped")}
        verdict = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        stopped = f"; rollout stopped: {self.stopped}" if self.stopped else ""
        lines.append(f"bundle {self.bundle_id}: {verdict}{stopped}")
        return "\n".join(lines)


def deploy_fleet(bundle_path: str | Path, boards: list[FleetBoard], runner_for: Callable[[FleetBoard], SSHRunner],
                 settings_for: Callable[[FleetBoard], ServiceSettings | None], *, canary: int = 1, parallel: int = 4,
                 max_failures: int = 0, default_dir: str = DEFAULT_DIR, ready_timeout: float = DEFAULT_READY_TIMEOUT,
                 log: Callable[[str], None] = lambda _: None) -> FleetResult:
    """Deploy ``bundle_path`` to ``boards`` by the canary rule (module docstring); never raises for a board's
    failure, which its :class:`BoardOutcome` reports."""
    if not boards:
        raise UsageError("a fleet deploy needs at least one board", setting="board")
    if len({b.board + "|" + (b.dir or default_dir) for b in boards}) != len(boards):
        raise UsageError("a board (and deploy directory) is named twice", setting="board")
    if not 1 <= canary <= len(boards):
        raise UsageError(f"--canary must be between 1 and the {len(boards)} boards, got {canary}", setting="canary")
    if parallel < 1 or max_failures < 0:
        raise UsageError("--parallel must be at least 1 and --max-failures at least 0", setting="parallel")
    local = LocalBundle.open(bundle_path)  # a corrupt bundle is refused before any board is contacted
    result = FleetResult(local.bundle_id)

    def one(board: FleetBoard, role: str) -> BoardOutcome:
        t0 = time.monotonic()
        try:
            r = deploy(bundle_path, runner_for(board), settings_for(board), dir=board.dir or default_dir,
                       ready_timeout=ready_timeout, log=lambda m: log(f"[{board.board}] {m}"))
            outcome = BoardOutcome(board.board, role, "deployed", r.message, time.monotonic() - t0, r.bundle_id)
        except EdgeskipError as e:  # unreachable, refused, failed and rolled back: the board's own report
            outcome = BoardOutcome(board.board, role, "failed", str(e), time.monotonic() - t0)
        log(f"[{board.board}] {role}: {outcome.status} in {outcome.seconds:.1f} s")
        return outcome

    for board in boards[:canary]:
        outcome = one(board, "canary")
        result.outcomes.append(outcome)
        if outcome.status != "deployed":
            result.stopped = f"canary {board.board} failed; no other board was touched"
            result.outcomes += [BoardOutcome(b.board, "canary" if i < canary else "rollout", "skipped",
                                             "not started: the canary failed")
                                for i, b in enumerate(boards) if i >= len(result.outcomes)]
            return result

    rest = boards[canary:]
    done: dict[int, BoardOutcome] = {}
    failures = 0
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        pending: dict[Future[BoardOutcome], int] = {}
        queue = list(enumerate(rest))
        while queue or pending:
            while queue and len(pending) < parallel and result.stopped is None:
                i, board = queue.pop(0)
                pending[pool.submit(one, board, "rollout")] = i
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                done[i] = future.result()
                failures += done[i].status == "failed"
            if failures > max_failures and result.stopped is None:
                result.stopped = (f"{failures} board(s) failed, more than --max-failures {max_failures}; boards not "
                                  "yet started were skipped")
        for i, board in queue:
            done[i] = BoardOutcome(board.board, "rollout", "skipped", "not started: the failure budget was spent")
    result.outcomes += [done[i] for i in range(len(rest))]
    return result


__all__ = ["FLEET_SCHEMA", "BoardOutcome", "FleetBoard", "FleetResult", "deploy_fleet", "load_fleet"]
