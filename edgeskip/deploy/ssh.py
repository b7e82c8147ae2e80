"""Reaching a board over ssh (README, "Deploy to a board"; the board runs the runtime, Korol et al., Sec. II-B / III-B).

Everything goes through the system ``ssh`` client, so ``~/.ssh/config``, ``known_hosts`` and
``ssh-agent`` work as they do in a terminal. ``BatchMode=yes`` means it never prompts: a
missing key or an unknown host key is an error with a clear message, not a hang. Host-key
checking stays as the user's ssh config says unless ``accept_new_host_key`` is set.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import IO

from edgeskip_runtime.errors import EdgeskipError, UsageError

DEFAULT_CONNECT_TIMEOUT = 10


class SSHError(EdgeskipError, RuntimeError):
    """ssh could not run a command on the board (base class; the message says what to do)."""


class SSHUnreachable(SSHError):
    """The board did not answer: wrong address, closed port, no route, unknown host name."""


class SSHAuthError(SSHError):
    """The board refused the key."""


class SSHHostKeyError(SSHError):
    """The board's host key is unknown or has changed."""


class SSHConnectionLost(SSHError):
    """The connection dropped in the middle of a command."""


class RemoteCommandError(SSHError):
    """The command ran on the board and failed (non-zero exit)."""

    def __init__(self, message: str, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(message)
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@dataclass(frozen=True)
class SSHTarget:
    """``user@host[:port]`` (also ``host``, ``user@[v6addr]:port``); the user and port default to ssh config's."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> SSHTarget:
        user, _, rest = text.rpartition("@") if "@" in text else (None, "", text)
        port: int | None = None
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", rest)  # [v6]:port
        if m:
            host, port_text = m.group(1), m.group(2)
        elif rest.count(":") == 1:
            host, port_text = rest.split(":")
        else:
            host, port_text = rest, None
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise UsageError(f"bad board address {text!r}: the port must be 1..65535")
            port = int(port_text)
        if not host or host.startswith("-") or any(c.isspace() for c in host) or (user is not None and (
                not user or user.startswith("-") or any(c.isspace() for c in user))):
            raise UsageError(f"bad board address {text!r}: expected user@host[:port]")
        return cls(host, user or None, port)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


# What ssh itself prints (exit status 255) for each kind of failure; the rest is the remote command's.
_AUTH = ("permission denied", "too many authentication failures", "no more authentication methods")
_HOSTKEY = ("host key verification failed", "remote host identification has changed", "host key for")
_UNREACHABLE = ("connection refused", "connection timed out", "no route to host", "network is unreachable",
                "could not resolve hostname", "operation timed out", "name or service not known",
                "temporary failure in name resolution")
_LOST = ("connection closed", "connection reset", "broken pipe", "closed by remote host",
         "timeout, server not responding", "lost connection", "kex_exchange_identification")


@dataclass
class SSHRunner:
    """Runs POSIX shell scripts on one board with the user's ssh settings plus ours."""

    target: SSHTarget
    identity: str | None = None
    options: tuple[str, ...] = ()  # KEY=VALUE, passed as -o (they win over ours: ssh keeps the first value)
    accept_new_host_key: bool = False
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    ssh: str = "ssh"

    def __post_init__(self) -> None:
        for opt in self.options:
            if "=" not in opt or opt.startswith("=") or any(c in opt for c in "\n\r"):
                raise UsageError(f"bad ssh option {opt!r}: expected KEY=VALUE (e.g. IdentitiesOnly=yes)",
                                 setting="ssh_option")

    def argv(self, remote: str) -> list[str]:
        args = [self.ssh]
        for opt in self.options:
            args += ["-o", opt]
        if self.identity:
            args += ["-i", self.identity]
        if self.accept_new_host_key:
            args += ["-o", "StrictHostKeyChecking=accept-new"]
        # BatchMode: never prompt for a password or a host key; keep-alives notice a dropped link.
        args += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.target.port:
            args += ["-p", str(self.target.port)]
        return [*args, "--", self.target.destination, remote]

    def run(self, script: str, *, stdin: IO[bytes] | bytes | None = None, timeout: float = 120,
            check: bool = True, what: str = "the command") -> Result:
        """Run ``script`` with ``sh -c`` on the board (whatever the login shell is)."""
        argv = self.argv("sh -c " + shlex.quote(script))
        kwargs: dict = {"input": stdin} if isinstance(stdin, bytes) else {
            "stdin": stdin if stdin is not None else subprocess.DEVNULL}
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, **kwargs)
        except FileNotFoundError as e:
            raise SSHError(f"the ssh client {self.ssh!r} is not installed (Debian: apt-get install "
                           "openssh-client)") from e
        except subprocess.TimeoutExpired as e:
            raise SSHConnectionLost(f"{what} on {self.target} did not finish within {timeout:.0f} s") from e
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        if proc.returncode == 255:
            self._raise_ssh_failure(err, what)
        if check and proc.returncode != 0:
            detail = _last_lines(err) or _last_lines(out) or "no output"
            raise RemoteCommandError(f"{what} failed on {self.target} (exit {proc.returncode}): {detail}",
                                     proc.returncode, out, err)
        return Result(proc.returncode, out, err)

    def _raise_ssh_failure(self, err: str, what: str) -> None:
        low = err.lower()
        reason = _last_lines(err, 1) or "ssh exited with status 255"
        key = f"identity file {self.identity}" if self.identity else "your ssh-agent / ~/.ssh keys"
        if any(s in low for s in _HOSTKEY):
            raise SSHHostKeyError(
                f"the host key of {self.target} is unknown or has changed ({reason}). Check it and add it to "
                "known_hosts (e.g. `ssh` to the board once), or choose to accept the key of a board seen for "
                "the first time", setting="accept_new_host_key")
        if any(s in low for s in _AUTH):
            raise SSHAuthError(
                f"authentication to {self.target} failed: the board refused the key ({key}). Passwords are "
                "never tried (BatchMode); install your public key on the board (ssh-copy-id) or name an identity "
                f"file. ssh said: {reason}", setting="identity")
        if any(s in low for s in _UNREACHABLE):
            raise SSHUnreachable(f"cannot reach the board {self.target}: {reason}. Check the address, the port "
                                 "and that sshd runs on the board")
        if any(s in low for s in _LOST):
            raise SSHConnectionLost(f"the connection to {self.target} dropped during {what}: {reason}")
        raise SSHError(f"ssh to {self.target} failed during {what}: {reason}")


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    return " | ".join(lines[-n:])


def q(value: object) -> str:
    """Shell-quote a value for a script run on the board."""
    return shlex.quote(str(value))
