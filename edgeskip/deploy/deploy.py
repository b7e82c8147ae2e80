"""Deploying a bundle to a board over ssh: stage, verify, switch, restart, roll back (README, "Deploy to a board").

The adaptive runtime serves on the board (Korol et al., Sec. II-B / III-B); this module puts a
compiled bundle there without ever leaving the board half-switched:

1. the bundle's architecture is compared with the board's ``uname -m`` before anything is touched;
2. its files are streamed (``tar`` over ssh) to ``DIR/staging/<id>``, ``<id>`` = short sha256 of
   ``manifest.json``;
3. every file's sha256 is computed *on the board* and compared with the manifest; a mismatch
   removes the staging copy and leaves ``current`` alone;
4. the verified copy becomes ``DIR/bundles/<id>`` (one rename);
5. a transaction script runs on the board, detached from ssh (``setsid nohup``) so a dropped
   connection cannot stop it half-way: it repoints ``previous`` and then ``current`` (each an
   atomic ``ln -s`` + ``mv -T``), restarts the service, waits for ``GET /v2/health/ready``, and
   if the server does not become ready, puts both links back and restarts what served before.

``rollback`` runs the same transaction with ``current`` and ``previous`` swapped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeskip_runtime.arch import arch_family
from edgeskip_runtime.bundle import Bundle
from edgeskip_runtime.errors import EdgeskipError

from edgeskip.deploy.services import ServiceSettings, get_service_manager
from edgeskip.deploy.ssh import SSHError, SSHRunner, q

DEFAULT_DIR = "/opt/edgeskip"
DEFAULT_READY_TIMEOUT = 60.0


class DeployError(EdgeskipError, RuntimeError):
    """The deploy or rollback was refused or failed; the message says what the board is serving now."""


@dataclass(frozen=True)
class LocalBundle:
    """The bundle on this machine: its verified files and its id."""

    path: Path
    bundle_id: str
    arch: str
    target: str
    files: dict[str, str]  # name -> sha256, manifest.json included

    @classmethod
    def open(cls, path: str | Path) -> LocalBundle:
        # Verify here first: a corrupt local bundle is refused before a byte goes to the board.
        bundle = Bundle.open(path, check_arch=False)
        manifest_bytes = (bundle.path / "manifest.json").read_bytes()
        files = {}
        for name, digest in bundle.manifest.files.items():
            if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*", name) or \
                    ".." in name.split("/"):
                raise DeployError(f"bundle {bundle.path} lists a file with an unsafe name {name!r}; rebuild it")
            files[name] = digest
        files["manifest.json"] = hashlib.sha256(manifest_bytes).hexdigest()
        return cls(bundle.path, files["manifest.json"][:12], bundle.arch, bundle.target_name, files)


@dataclass(frozen=True)
class Outcome:
    """What the board's transaction reported: ``state`` and the links after it."""

    state: str  # ready, switched, rolled-back, rollback-failed, failed, busy
    current: str
    previous: str
    message: str
    log: str


@dataclass(frozen=True)
class DeployResult:
    bundle_id: str
    board: str
    current: str
    previous: str
    uploaded: bool
    state: str
    message: str


Hook = Callable[[SSHRunner, str], None]


def deploy(bundle_path: str | Path, runner: SSHRunner, settings: ServiceSettings | None, *,
           dir: str = DEFAULT_DIR, ready_timeout: float = DEFAULT_READY_TIMEOUT, after_upload: Hook | None = None,
           log: Callable[[str], None] = lambda _: None) -> DeployResult:
    """Deploy a bundle; ``settings`` None means no service (``--no-service``): switch the links only.

    ``after_upload(runner, staging_dir)`` runs between upload and verification (tests use it
    to corrupt the copy on the board).
    """
    local = LocalBundle.open(bundle_path)
    ServiceSettings(dir=dir)  # validate the directory even without a service
    manager = get_service_manager(settings) if settings else None  # fail on bad settings before any ssh
    staging, final = f"{dir}/staging/{local.bundle_id}", f"{dir}/bundles/{local.bundle_id}"

    out = runner.run(f"echo \"machine=$(uname -m)\"; echo \"current=$(readlink {q(dir + '/current')})\"; "
                     f"[ -d {q(final)} ] && echo have=1 || true", what="reading the board's architecture").stdout
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    machine, current_before, have = facts.get("machine", "").strip(), facts.get("current", "").strip(), "have" in facts
    if arch_family(machine) != local.arch:
        raise DeployError(f"refusing to deploy {local.path}: it was built for target {local.target!r} "
                          f"({local.arch}), but the board {runner.target} is {machine} ({arch_family(machine)}). "
                          "Compile for a matching target (`edgeskip board-check` names it). Nothing was changed "
                          "on the board")
    log(f"board {runner.target} is {machine}; bundle {local.bundle_id} ({local.target})")

    uploaded = False
    if have and not _mismatches(runner, final, local):
        log(f"bundle {local.bundle_id} is already on the board (verified); not uploading it again")
    else:
        _upload(runner, local, staging, dir)
        if after_upload is not None:
            after_upload(runner, staging)
        bad = _mismatches(runner, staging, local)
        if bad:
            _cleanup(runner, staging)
            raise DeployError(f"the copy on the board failed verification ({'; '.join(bad)}); the staging copy was "
                              f"removed and {dir}/current is unchanged"
                              + (f" ({current_before})" if current_before else " (nothing deployed)"))
        log(f"uploaded and verified {len(local.files)} files on the board (sha256)")
        # Replace an incomplete or corrupt earlier copy of the same id; then one rename makes it final.
        runner.run(f"set -e; mkdir -p {q(dir + '/bundles')}; rm -rf {q(final + '.old')}; "
                   f"if [ -e {q(final)} ]; then mv {q(final)} {q(final + '.old')}; fi; "
                   f"mv {q(staging)} {q(final)}; rm -rf {q(final + '.old')}",
                   what="moving the verified bundle into place")
        uploaded = True

    target = f"bundles/{local.bundle_id}"
    outcome = _transaction(runner, dir, "deploy", target, settings, manager is not None, ready_timeout)
    if outcome.state in ("ready", "switched"):
        return DeployResult(local.bundle_id, str(runner.target), outcome.current, outcome.previous, uploaded,
                            outcome.state, outcome.message)
    if uploaded and outcome.current != target and outcome.previous != target:
        _cleanup(runner, final)  # the board is as before the deploy, apart from the log
    raise DeployError(_failure_message(outcome, runner, f"bundle {local.bundle_id}"))


def rollback(runner: SSHRunner, settings: ServiceSettings | None = None, *, dir: str = DEFAULT_DIR,
             ready_timeout: float = DEFAULT_READY_TIMEOUT, restart: bool = True) -> DeployResult:
    """Swap ``current`` and ``previous`` and restart; if the previous bundle does not become ready, swap back."""
    ServiceSettings(dir=dir)
    if restart and settings is None:
        settings = saved_settings(runner, dir)
    if settings is not None:
        get_service_manager(settings)
    outcome = _transaction(runner, dir, "rollback", "", settings, restart and settings is not None, ready_timeout)
    if outcome.state in ("ready", "switched"):
        return DeployResult(outcome.current.rpartition("/")[2], str(runner.target), outcome.current,
                            outcome.previous, False, outcome.state, outcome.message)
    raise DeployError(_failure_message(outcome, runner, "the rollback"))


def saved_settings(runner: SSHRunner, dir: str) -> ServiceSettings:
    """The service settings of the last deploy, from ``DIR/service.json`` on the board."""
    out = runner.run(f"cat {q(dir + '/service.json')} 2>/dev/null || true", what="reading the service settings")
    try:
        return ServiceSettings.from_dict(json.loads(out.stdout))
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise DeployError(f"{runner.target}:{dir}/service.json is missing or unreadable (was this board deployed "
                          "to with a service?); name the service manager, or deploy with no service",
                          setting="service") from e


def _upload(runner: SSHRunner, local: LocalBundle, staging: str, dir: str) -> None:
    """Stream the bundle's files as a tar archive into an empty staging directory (no rsync or sftp needed)."""
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for name in local.files:
                info = tar.gettarinfo(str(local.path / name), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(local.path / name, "rb") as f:
                    tar.addfile(info, f)
        archive.seek(0)
        script = (f"set -e; mkdir -p {q(dir + '/staging')}; rm -rf {q(staging)}; mkdir {q(staging)}; "
                  f"tar -x -o -f - -C {q(staging)}")
        try:
            runner.run(script, stdin=archive, timeout=1800, what="the upload")
        except SSHError as e:
            _cleanup(runner, staging)
            hint = " (is the board's disk full?)" if "space" in str(e).lower() else ""
            raise DeployError(f"uploading the bundle to {runner.target}:{staging} failed{hint}: {e}. The staging "
                              f"copy was removed; {dir}/current is unchanged") from e


def _mismatches(runner: SSHRunner, where: str, local: LocalBundle) -> list[str]:
    """Hash the files on the board (sha256sum, else python3 hashlib) and list those that differ."""
    names = " ".join(q(n) for n in local.files)
    out = runner.run(f"sh -s -- {q(where)} {names}", stdin=board_script("checksums.sh").encode(),
                     what="verifying the checksums on the board").stdout
    found = {}
    for line in out.splitlines():
        digest, _, name = line.partition("  ")
        found[name.lstrip("*")] = digest.strip()
    bad = []
    for name, expected in local.files.items():
        actual = found.get(name)
        if actual is None:
            bad.append(f"{name} is missing")
        elif actual != expected:
            bad.append(f"{name}: sha256 on the board {actual[:12]}…, manifest {expected[:12]}…")
    return bad


def _cleanup(runner: SSHRunner, path: str) -> None:
    # If the connection is gone, a staging leftover is harmless: the next deploy replaces it.
    with contextlib.suppress(SSHError):
        runner.run(f"rm -rf {q(path)}", what="cleaning up", timeout=60)


SCRIPTS = Path(__file__).resolve().parent / "sh"  # the board-side shell programs (package data)


def board_script(name: str) -> str:
    """The text of one of the board-side shell programs in ``edgeskip/deploy/sh/``."""
    return (SCRIPTS / name).read_text()


def shell_assignments(env: dict[str, str]) -> str:
    """``K='v' ...``: variables for one command on the board, each value quoted for sh."""
    return " ".join(f"{k}={q(v)}" for k, v in env.items())


def transaction_program(dir: str, mode: str, new: str, settings: ServiceSettings | None, ready_timeout: float,
                        status: str) -> tuple[str, dict[str, str]]:
    """The transaction (``mode`` deploy or rollback) as run on the board: the service manager's functions
    followed by ``transaction.sh``, and the environment that gives it its values. No service if ``settings``
    is None."""
    manager = get_service_manager(settings) if settings else None
    script = board_script(manager.script if manager else "service_none.sh") + board_script("transaction.sh")
    env = {"DIR": dir, "MODE": mode, "NEW": new, "TIMEOUT": str(max(1, round(ready_timeout))),
           "PORT": str(settings.port if settings else 0), "PY": settings.board_python if settings else "python3",
           "SERVICE": "1" if manager else "0", "STATUS": status,
           "SETTINGS_JSON": settings.to_json() if settings else "{}", **(manager.environment() if manager else {})}
    return script, env


def _transaction(runner: SSHRunner, dir: str, mode: str, new: str, settings: ServiceSettings | None,
                 service: bool, ready_timeout: float) -> Outcome:
    token = f"{mode}-{secrets.token_hex(4)}"
    txn = f"{dir}/.txn"
    status = f"{txn}/{token}.status"
    script, env = transaction_program(dir, mode, new, settings if service else None, ready_timeout, status)
    # launch.sh writes the script, starts it detached, then waits for its status file. If this ssh session
    # drops, only the waiting stops; the transaction runs to its end on the board.
    launcher = f"{shell_assignments({**env, 'TXN': txn, 'TOKEN': token})} sh -c {q(board_script('launch.sh'))}"
    try:
        result = runner.run(launcher, stdin=script.encode(), timeout=3 * ready_timeout + 120,
                            what=f"the {mode} transaction")
    except SSHError as e:
        raise DeployError(f"{e}. The board finishes the {mode} on its own: it keeps the new bundle only if it "
                          f"becomes ready and otherwise restores {dir}/current; check with `edgeskip board-check "
                          f"{runner.target} --dir {dir}`") from e
    head, _, tail = result.stdout.partition("log<<\n")
    values = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    return Outcome(values.get("state", "died"), values.get("current", ""), values.get("previous", ""),
                   values.get("message", "the transaction on the board stopped without a result: "
                                         + tail.strip().replace("\n", " | ")), tail.strip())


def _failure_message(outcome: Outcome, runner: SSHRunner, what: str) -> str:
    msg = f"{what} failed on {runner.target}: {outcome.message}"
    if outcome.log:
        lines = [ln for ln in outcome.log.splitlines() if ln.strip() and not ln.startswith("---")][-6:]
        msg += "\nserver log (last lines):\n  " + "\n  ".join(lines)
    return msg
