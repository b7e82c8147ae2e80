"""How the server is kept running on a board (README, "Deploy to a board"): a registry of service managers.

The adaptive runtime (Korol et al., Sec. II-B / III-B) runs as a long-lived server on the
board. Each manager writes POSIX shell functions that the deploy transaction
(:mod:`edgeskip.deploy.deploy`) runs on the board, detached from the ssh connection:

* ``svc_install`` installs or updates the service definition,
* ``svc_stop`` / ``svc_start`` stop and start it,
* ``svc_alive`` exits 0 while its process is up (so a crashing server fails fast),
* ``svc_log`` prints the end of its log (for the error message of a failed deploy).

``systemd`` (default) writes ``/etc/systemd/system/edgeskip.service``; ``command`` runs a
user-given command with ``setsid nohup`` and a pid file in the deploy directory, for boards
(and test sshds) without systemd. A new manager is a decorated class, nothing else.
"""

from __future__ import annotations

import json
import re
import string
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeskip.deploy.ssh import q
from edgeskip.registry import Registry

UNIT_NAME = "edgeskip.service"
PLACEHOLDERS = ("current", "dir", "host", "port", "python")


@dataclass(frozen=True)
class ServiceSettings:
    """What the service runs; saved on the board as ``DIR/service.json`` so a rollback reuses it."""

    dir: str
    manager: str = "systemd"
    host: str = "127.0.0.1"
    port: int = 8000
    python: str | None = None  # the board's interpreter; None: edgeskip-runtime on PATH, else python3
    command: str | None = None  # the command manager's command line, with {current}, {port}, ... placeholders
    serve_args: tuple[str, ...] = field(default=())  # appended to `edgeskip-runtime serve` (systemd)

    def __post_init__(self) -> None:
        if not self.dir.startswith("/") or re.search(r"[\s'\"\\$`%]", self.dir):
            raise ValueError(f"--dir {self.dir!r} must be an absolute path without spaces, quotes or $")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port {self.port} is not a TCP port")
        if self.command is not None:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.command) if f is not None}
            unknown = fields - set(PLACEHOLDERS)
            if unknown:
                raise ValueError(f"--service-command uses unknown placeholders {sorted(unknown)}; known: "
                                 f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} (write {{{{ for a brace)")

    @property
    def board_python(self) -> str:
        return self.python or "python3"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "serve_args": list(self.serve_args)}, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServiceSettings:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["serve_args"] = tuple(known.get("serve_args") or ())
        return cls(**known)


class ServiceManager(ABC):
    """Shell functions (``svc_install``, ``svc_stop``, ``svc_start``, ``svc_alive``, ``svc_log``) for one manager.

    They run inside the deploy transaction with ``$DIR`` (the deploy directory), ``$PY``
    (the board's python) and ``$SUDO`` (empty for root, else ``sudo -n``) set.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    @abstractmethod
    def shell_functions(self) -> str: ...


SERVICE_MANAGERS: Registry[type[ServiceManager]] = Registry("service manager")


def get_service_manager(settings: ServiceSettings) -> ServiceManager:
    return SERVICE_MANAGERS.get(settings.manager)(settings)


def list_service_managers() -> list[str]:
    return SERVICE_MANAGERS.names()


@SERVICE_MANAGERS.register("systemd")
class SystemdService(ServiceManager):
    """``edgeskip.service``: ``edgeskip-runtime serve DIR/current`` restarted on failure and at boot."""

    def unit_lines(self) -> list[str]:
        """The unit file; ``@EXE@`` and ``@USER@`` are filled in on the board (it knows its PATH and user)."""
        s = self.settings
        serve = " ".join(["serve", f"{s.dir}/current", "--host", s.host, "--port", str(s.port),
                          *(_systemd_quote(a) for a in s.serve_args)])
        return ["[Unit]", f"Description=edgeskip adaptive inference server ({s.dir}/current)",
                "After=network-online.target", "", "[Service]", "Type=simple", "User=@USER@",
                f"WorkingDirectory={s.dir}", f"ExecStart=@EXE@ {serve}", "ExecReload=/bin/kill -HUP $MAINPID",
                "Restart=on-failure", "RestartSec=2", "", "[Install]", "WantedBy=multi-user.target"]

    def shell_functions(self) -> str:
        unit = f"/etc/systemd/system/{UNIT_NAME}"
        lines = " ".join(q(line) for line in self.unit_lines())
        explicit = q(self.settings.python or "")
        return f"""
svc_exe() {{  # the server's command: --python if given, else edgeskip-runtime on PATH, else python3 -m
  if [ -n {explicit} ]; then echo "$(command -v {explicit}) -m edgeskip_runtime.cli"
  elif command -v edgeskip-runtime >/dev/null 2>&1; then command -v edgeskip-runtime
  elif command -v python3 >/dev/null 2>&1; then echo "$(command -v python3) -m edgeskip_runtime.cli"
  else echo "neither edgeskip-runtime nor python3 is on PATH" >&2; return 1; fi
}}
svc_install() {{
  if ! command -v systemctl >/dev/null 2>&1; then
    echo "systemctl not found: this board has no systemd (use --service command)" >&2; return 1
  fi
  exe=$(svc_exe) || return 1
  user=$(id -un)
  printf '%s\\n' {lines} | sed -e "s|@EXE@|$exe|" -e "s|@USER@|$user|" > "$DIR/.txn/unit.tmp" || return 1
  $SUDO cp "$DIR/.txn/unit.tmp" {unit}.tmp && $SUDO chmod 0644 {unit}.tmp && $SUDO mv -f {unit}.tmp {unit} \\
    && $SUDO systemctl daemon-reload && $SUDO systemctl enable --quiet {UNIT_NAME}
}}
svc_stop() {{ $SUDO systemctl stop {UNIT_NAME} 2>/dev/null || true; }}
svc_start() {{ $SUDO systemctl restart {UNIT_NAME}; }}
svc_alive() {{ systemctl is-active --quiet {UNIT_NAME}; }}
svc_log() {{
  journalctl -u {UNIT_NAME} -n 20 --no-pager -o cat 2>/dev/null \
    || $SUDO journalctl -u {UNIT_NAME} -n 20 --no-pager -o cat
}}
"""


@SERVICE_MANAGERS.register("command")
class CommandService(ServiceManager):
    """A user-given command run with ``setsid nohup``: pid in ``DIR/edgeskip.pid``, output in ``DIR/service.log``."""

    def __init__(self, settings: ServiceSettings) -> None:
        if not settings.command:
            raise ValueError("the command service manager needs --service-command, e.g. "
                             "'python3 -m edgeskip_runtime.cli serve {current} --port {port}'")
        super().__init__(settings)

    def command_line(self) -> str:
        s = self.settings
        values = {"current": f"{s.dir}/current", "dir": s.dir, "host": s.host, "port": s.port,
                  "python": s.board_python}
        return (s.command or "").format(**{k: q(v) for k, v in values.items()})

    def shell_functions(self) -> str:
        cmd = q(self.command_line())
        return f"""
svc_install() {{ :; }}
svc_pid() {{ p=$(cat "$DIR/edgeskip.pid" 2>/dev/null); case "$p" in ''|*[!0-9]*) return 1;; esac; echo "$p"; }}
svc_stop() {{  # the whole process group (setsid made the server its leader), TERM then KILL after 10 s
  p=$(svc_pid) || {{ rm -f "$DIR/edgeskip.pid"; return 0; }}
  kill -TERM "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
  i=0; while running "$p" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  running "$p" && {{ kill -KILL "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; sleep 0.2; }}
  rm -f "$DIR/edgeskip.pid"
}}
svc_start() {{
  echo "--- $(date) starting $(readlink "$DIR/current")" >> "$DIR/service.log"
  S=; command -v setsid >/dev/null 2>&1 && S=setsid
  # a subshell, so the server is not this script's child (it is reaped by init, never left a zombie)
  ( cd "$DIR" && $S nohup sh -c {cmd} >> "$DIR/service.log" 2>&1 < /dev/null &
    echo $! > "$DIR/edgeskip.pid.tmp" && mv -f "$DIR/edgeskip.pid.tmp" "$DIR/edgeskip.pid" )
}}
svc_alive() {{ p=$(svc_pid) && running "$p"; }}
svc_log() {{  # what the last start wrote (each start begins with a "--- " line)
  awk '/^--- /{{n = 0}} {{line[n++] = $0}} END {{for (i = (n > 20 ? n - 20 : 0); i < n; i++) print line[i]}}' \
    "$DIR/service.log" 2>/dev/null
}}
"""


def _systemd_quote(arg: str) -> str:
    # systemd splits ExecStart like a shell (double quotes group); @ and | would clash with the sed above.
    if re.search(r"[\"\\|@\n%$]", arg):
        raise ValueError(f"--serve-arg {arg!r} contains a character systemd or the unit template cannot carry")
    return f'"{arg}"' if re.search(r"\s", arg) else arg
