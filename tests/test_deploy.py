"""Deploying to a board over real ssh (README, "Deploy to a board"): a real sshd on loopback, the real server, HTTP.

The "board" is this machine reached through Debian's sshd (fixture ``sshd``); the deploy goes
into a temporary ``--dir`` and the ``command`` service manager starts the real server
(``python -m edgeskip_runtime.cli serve {current}``) so the tests can watch it over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from edgeskip_runtime.bundle import rewrite_bundle
from edgeskip_runtime.pareto import ConfigPoint, ParetoFront

from edgeskip.cli import main
from edgeskip.deploy.deploy import (
    SCRIPTS,
    DeployError,
    LocalBundle,
    board_script,
    deploy,
    shell_assignments,
    transaction_program,
)
from edgeskip.deploy.services import ServiceSettings, SystemdService
from edgeskip.deploy.ssh import SSHRunner, SSHTarget, SSHUnreachable

SERVE = f"{sys.executable} -m edgeskip_runtime.cli serve {{current}} --port {{port}} --no-pin"
READY_TIMEOUT = "60"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}
    except OSError:
        return 0, {}


def no_skip_accuracy(port: int) -> float:
    """Which bundle is serving: the bundles below differ in their no-skip accuracy."""
    status, doc = http_json(port, "/v2/models/resnet20/configs")
    assert status == 200, doc
    return doc["configs"][0]["accuracy"]


def variant(bundle: Path, out: Path, accuracy: float, mask_length: int = 6) -> Path:
    """A copy of ``bundle`` with another (checksummed) pareto.json: another bundle id.

    ``mask_length`` other than the model's 6 gates is valid JSON that the server refuses to start with.
    """
    shutil.copytree(bundle, out)
    configs = [ConfigPoint([1] * mask_length, accuracy, 1.0), ConfigPoint([0] * mask_length, 0.5, 0.3)]
    tmp = out.parent / f"{out.name}.pareto.json"
    ParetoFront("resnet20", "synthetic", mask_length, configs).save(tmp)
    rewrite_bundle(out, {"pareto.json": tmp.read_bytes()})
    return out


class Board:
    """A deploy directory on the sshd "board", its server port, and the CLI with the right ssh options."""

    def __init__(self, sshd, root: Path) -> None:
        self.sshd, self.dir, self.port = sshd, root / "edgeskip", free_port()

    def cli(self, *args: str, key: Path | None = None):
        return CliRunner().invoke(main, [*args, *self.sshd.cli_args(key)], catch_exceptions=False)

    def deploy(self, bundle: Path, *extra: str, key: Path | None = None):
        return self.cli("deploy", str(bundle), "--board", self.sshd.board, "--dir", str(self.dir),
                        "--service-command", SERVE, "--python", sys.executable, "--port", str(self.port),
                        "--ready-timeout", READY_TIMEOUT, *extra, key=key)

    def link(self, name: str) -> str | None:
        p = self.dir / name
        return os.readlink(p) if p.is_symlink() else None

    def pid(self) -> int | None:
        p = self.dir / "edgeskip.pid"
        return int(p.read_text()) if p.is_file() else None

    def ready(self) -> bool:
        return http_json(self.port, "/v2/health/ready") == (200, {"ready": True})

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def board(sshd, tmp_path: Path):
    b = Board(sshd, tmp_path)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def bundle_a(bundles) -> Path:
    return bundles("host").path


@pytest.fixture(scope="module")
def bundle_b(bundle_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return variant(bundle_a, tmp_path_factory.mktemp("b") / "bundle", 0.77)


@pytest.fixture(scope="module")
def bundle_bad(bundle_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return variant(bundle_a, tmp_path_factory.mktemp("bad") / "bundle", 0.66, mask_length=3)


def bid(bundle: Path) -> str:
    return LocalBundle.open(bundle).bundle_id


# -- parsing and the unit file (no board needed) -----------------------------------------------------------

@pytest.mark.parametrize(("text", "user", "host", "port"), [
    ("pi@board", "pi", "board", None), ("root@10.0.0.7:2222", "root", "10.0.0.7", 2222),
    ("board.local", None, "board.local", None), ("odroid@[fe80::1]:22", "odroid", "fe80::1", 22)])
def test_board_addresses(text: str, user: str | None, host: str, port: int | None) -> None:
    t = SSHTarget.parse(text)
    assert (t.user, t.host, t.port) == (user, host, port)


@pytest.mark.parametrize("text", ["pi@board:0", "pi@board:x", "@board", "-oProxyCommand=x", "pi@"])
def test_bad_board_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="bad board address"):
        SSHTarget.parse(text)


def test_systemd_unit_serves_the_current_link() -> None:
    unit = SystemdService(ServiceSettings(dir="/opt/edgeskip", port=8001, serve_args=("--policy", "load-aware")))
    lines = unit.unit_lines()
    assert "ExecStart=@EXE@ serve /opt/edgeskip/current --host 127.0.0.1 --port 8001 --policy load-aware" in lines
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines and "Restart=on-failure" in lines
    with pytest.raises(ValueError, match="absolute path"):
        ServiceSettings(dir="relative/dir")
    with pytest.raises(ValueError, match="unknown placeholders"):
        ServiceSettings(dir="/opt/e", manager="command", command="serve {bundle}")


@pytest.mark.parametrize("settings", [
    ServiceSettings(dir="/opt/edgeskip"), ServiceSettings(dir="/opt/edgeskip", python="/opt/venv/bin/python3"),
    ServiceSettings(dir="/opt/edgeskip", manager="command", command=SERVE), None], ids=str)
@pytest.mark.parametrize("mode", ["deploy", "rollback"])
def test_transaction_programs_are_valid_posix_sh(settings: ServiceSettings | None, mode: str) -> None:
    """The program the board runs (the service functions, then transaction.sh) and the launcher around it."""
    script, env = transaction_program("/opt/edgeskip", mode, "bundles/0123456789ab", settings, 30,
                                      "/opt/edgeskip/.txn/s")
    assert env["MODE"] == mode and env["SERVICE"] == ("0" if settings is None else "1")
    launcher = f"{shell_assignments({**env, 'TXN': '/opt/edgeskip/.txn', 'TOKEN': 't'})} sh -c true"
    for program in (script, board_script("launch.sh"), launcher):
        for shell in ("sh", "bash"):  # dash is Debian's /bin/sh; busybox ash is not installed here
            r = subprocess.run([shell, "-n"], input=program, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (make test installs Debian's shellcheck as root)")
    r = subprocess.run(["shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in SCRIPTS.glob("*.sh")))
def test_board_scripts_pass_shellcheck(name: str) -> None:
    assert subprocess.run(["sh", "-n", str(SCRIPTS / name)]).returncode == 0
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (make test installs Debian's shellcheck as root)")
    r = subprocess.run(["shellcheck", "-s", "sh", str(SCRIPTS / name)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_transaction_refuses_to_run_without_its_values(tmp_path: Path) -> None:
    """transaction.sh run bare (no DIR, MODE, ...) stops before it touches anything."""
    r = subprocess.run(["sh", str(SCRIPTS / "transaction.sh")], cwd=tmp_path, capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"]})
    assert r.returncode != 0 and "DIR" in r.stderr
    assert list(tmp_path.iterdir()) == []


# -- board-check ---------------------------------------------------------------------------------------------

def test_board_check(sshd, board: Board) -> None:
    r = board.cli("board-check", sshd.board, "--python", sys.executable, "--dir", str(board.dir))
    assert r.exit_code == 0, r.output
    assert "x86_64" in r.output and "target" in r.output and "host" in r.output
    assert ("cpufreq is not available" in r.output) != ("MHz max" in r.output)
    r = board.cli("board-check", sshd.board, "--python", sys.executable, "--json")
    facts = json.loads(r.output)
    from importlib.metadata import version

    assert facts["arch"] == "x86_64" and facts["target"] == "host"
    assert facts["packages"] == {"iree-base-runtime": version("iree-base-runtime"),
                                 "edgeskip-runtime": version("edgeskip-runtime")}
    assert facts["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert len(facts["cores"]) == len(list(Path("/sys/devices/system/cpu").glob("cpu[0-9]*")))


# -- deploy, switch, roll back -------------------------------------------------------------------------------

def test_first_and_second_deploy_then_rollback(board: Board, bundle_a: Path, bundle_b: Path) -> None:
    r = board.deploy(bundle_a)
    assert r.exit_code == 0, r.output
    assert board.link("current") == f"bundles/{bid(bundle_a)}" and board.link("previous") is None
    assert board.ready() and no_skip_accuracy(board.port) == pytest.approx(0.9)
    first_pid = board.pid()

    r = board.deploy(bundle_b)
    assert r.exit_code == 0, r.output
    assert board.link("current") == f"bundles/{bid(bundle_b)}"
    assert board.link("previous") == f"bundles/{bid(bundle_a)}"
    assert (board.dir / "previous" / "model.vmfb").is_file()  # the previous bundle is kept, complete
    assert board.pid() != first_pid and board.ready() and no_skip_accuracy(board.port) == pytest.approx(0.77)
    assert not list((board.dir / "staging").iterdir())

    r = board.cli("rollback", "--board", board.sshd.board, "--dir", str(board.dir), "--ready-timeout", READY_TIMEOUT)
    assert r.exit_code == 0, r.output
    assert board.link("current") == f"bundles/{bid(bundle_a)}"
    assert board.link("previous") == f"bundles/{bid(bundle_b)}"
    assert board.ready() and no_skip_accuracy(board.port) == pytest.approx(0.9)


def test_failing_bundle_is_rolled_back(board: Board, bundle_a: Path, bundle_bad: Path) -> None:
    assert board.deploy(bundle_a).exit_code == 0
    r = board.deploy(bundle_bad)
    assert r.exit_code == 1
    assert "did not become ready (the server exited)" in r.output and "rolled back to" in r.output
    assert "Traceback" not in r.output and "masks of another length" in r.output  # the server's own reason
    assert board.link("current") == f"bundles/{bid(bundle_a)}" and board.link("previous") is None
    assert not (board.dir / "bundles" / bid(bundle_bad)).exists()
    assert board.ready() and no_skip_accuracy(board.port) == pytest.approx(0.9)


def test_failing_first_deploy_leaves_nothing(board: Board, bundle_bad: Path) -> None:
    r = board.deploy(bundle_bad)
    assert r.exit_code == 1 and "nothing was deployed before" in r.output
    assert board.link("current") is None and board.pid() is None


def test_checksum_failure_on_the_board(sshd, board: Board, bundle_a: Path, bundle_b: Path) -> None:
    assert board.deploy(bundle_a).exit_code == 0
    pid = board.pid()

    def tamper(runner: SSHRunner, staging: str) -> None:  # corrupt the uploaded copy, on the board
        runner.run(f"printf x >> {staging}/model.vmfb")

    settings = ServiceSettings(dir=str(board.dir), manager="command", command=SERVE, port=board.port,
                               python=sys.executable)
    with pytest.raises(DeployError, match=r"failed verification \(model.vmfb: sha256 on the board"):
        deploy(bundle_b, sshd.runner(), settings, dir=str(board.dir), after_upload=tamper)
    assert board.link("current") == f"bundles/{bid(bundle_a)}"
    assert not (board.dir / "staging" / bid(bundle_b)).exists()
    assert board.pid() == pid and board.ready()  # never restarted


def test_corrupt_local_bundle_is_refused_before_upload(board: Board, bundle_a: Path, tmp_path: Path) -> None:
    bad = shutil.copytree(bundle_a, tmp_path / "bad")
    with open(bad / "model.vmfb", "ab") as f:
        f.write(b"x")
    r = board.deploy(bad)
    assert r.exit_code == 1 and "checksum mismatch for model.vmfb" in r.output
    assert not board.dir.exists()


def test_architecture_mismatch_is_refused(board: Board, bundles) -> None:
    r = board.deploy(bundles("odroid-xu4").path)
    assert r.exit_code == 1
    assert "refusing to deploy" in r.output and "armv7" in r.output and "x86_64" in r.output
    assert "Nothing was changed" in r.output and not board.dir.exists()


def test_unreachable_board(board: Board, bundle_a: Path) -> None:
    r = board.cli("deploy", str(bundle_a), "--board", f"root@127.0.0.1:{free_port()}", "--dir", str(board.dir),
                  "--connect-timeout", "5")
    assert r.exit_code == 1 and "cannot reach the board" in r.output and "Connection refused" in r.output
    assert "Traceback" not in r.output and not board.dir.exists()


def test_wrong_key(sshd, board: Board, bundle_a: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    r = board.deploy(bundle_a, key=other)
    assert r.exit_code == 1 and "authentication to" in r.output and "refused the key" in r.output
    assert "Traceback" not in r.output and not board.dir.exists()
    r = board.cli("board-check", sshd.board, key=other)
    assert r.exit_code == 1 and "authentication to" in r.output


def test_unknown_host_key(sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    base = ["-i", str(sshd.user_key), "--ssh-option", f"UserKnownHostsFile={known}",
            "--ssh-option", "GlobalKnownHostsFile=/dev/null", "--ssh-option", "IdentitiesOnly=yes"]
    r = CliRunner().invoke(main, ["board-check", sshd.board, *base])
    assert r.exit_code == 1 and "--accept-new-host-key" in r.output
    r = CliRunner().invoke(main, ["board-check", sshd.board, *base, "--accept-new-host-key"])
    assert r.exit_code == 0, r.output
    assert Path(f"{sshd.host_key}.pub").read_text().split()[1] in known.read_text()  # trusted on first use


def test_connection_drop_after_upload(own_sshd, bundle_a: Path, bundle_b: Path, tmp_path: Path) -> None:
    """sshd goes away between upload and verification: the board keeps serving the old bundle."""
    own = own_sshd
    board = Board(own, tmp_path)
    try:
        assert board.deploy(bundle_a).exit_code == 0
        pid = board.pid()

        def drop(runner: SSHRunner, staging: str) -> None:
            own.stop()

        settings = ServiceSettings(dir=str(board.dir), manager="command", command=SERVE, port=board.port,
                                   python=sys.executable)
        with pytest.raises(SSHUnreachable, match="cannot reach the board"):
            deploy(bundle_b, own.runner(), settings, dir=str(board.dir), after_upload=drop)
        assert board.link("current") == f"bundles/{bid(bundle_a)}"
        assert board.pid() == pid and board.ready()
    finally:
        board.stop()


def test_full_disk_during_upload(sshd, bundle_a: Path, bundle_b: Path, tmp_path: Path) -> None:
    """A deploy directory on a tmpfs that holds one bundle but not two: the upload fails, nothing switches."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    size = sum(f.stat().st_size for f in bundle_a.iterdir()) * 3 // 2 + (64 << 10)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs mounts to simulate a full disk")
    board = Board(sshd, mnt)
    try:
        assert board.deploy(bundle_a).exit_code == 0
        pid = board.pid()
        r = board.deploy(bundle_b)
        assert r.exit_code == 1 and "uploading the bundle" in r.output and "disk full" in r.output
        assert board.link("current") == f"bundles/{bid(bundle_a)}"
        assert not (board.dir / "staging" / bid(bundle_b)).exists()
        assert board.pid() == pid and board.ready()
    finally:
        board.stop()
        time.sleep(0.2)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_redeploy_and_rollback_without_previous(board: Board, bundle_a: Path) -> None:
    assert board.deploy(bundle_a).exit_code == 0
    r = board.deploy(bundle_a)  # the same bundle again: verified where it is, not uploaded, just restarted
    assert r.exit_code == 0 and "already on the board (verified)" in r.output
    assert board.link("previous") is None
    r = board.cli("rollback", "--board", board.sshd.board, "--dir", str(board.dir))
    assert r.exit_code == 1 and "no previous bundle" in r.output
    assert board.link("current") == f"bundles/{bid(bundle_a)}" and board.ready()


def test_no_service_only_switches(board: Board, bundle_a: Path) -> None:
    r = board.deploy(bundle_a, "--no-service")
    assert r.exit_code == 0, r.output
    assert board.link("current") == f"bundles/{bid(bundle_a)}" and board.pid() is None
