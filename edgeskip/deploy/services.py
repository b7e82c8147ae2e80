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
from typing import Any, ClassVar

from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.registry import Registry

from edgeskip.deploy.ssh import q

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
            raise UsageError(f"board directory {self.dir!r} must be an absolute path without spaces, quotes or $",
                             setting="dir")
        if not 0 < self.port < 65536:
            raise UsageError(f"port {self.port} is not a TCP port", setting="port")
        if self.command is not None:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.command) if f is not None}
            unknown = fields - set(PLACEHOLDERS)
            if unknown:
                raise UsageError(f"the service command uses unknown placeholders {sorted(unknown)}; known: "
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

    They are a shell file (``script``) sent in front of ``transaction.sh``, which sets ``$DIR`` (the deploy
    directory), ``$PY`` (the board's python) and ``$SUDO`` (empty for root, else ``sudo -n``); their own values
    come from :meth:`environment`.
    """

    script: ClassVar[str]  # its functions, a file in edgeskip/deploy/sh/

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings

    @abstractmethod
    def environment(self) -> dict[str, str]:
        """The values ``script`` reads from its environment."""


SERVICE_MANAGERS: Registry[type[ServiceManager]] = Registry("service manager")


def get_service_manager(settings: ServiceSettings) -> ServiceManager:
    return SERVICE_MANAGERS.get(settings.manager)(settings)


def list_service_managers() -> list[str]:
    return SERVICE_MANAGERS.names()


@SERVICE_MANAGERS.register("systemd")
class SystemdService(ServiceManager):
    """``edgeskip.service``: ``edgeskip-runtime serve DIR/current`` restarted on failure and at boot."""

    script = "service_systemd.sh"

    def unit_lines(self) -> list[str]:
        """The unit file; ``@EXE@`` and ``@USER@`` are filled in on the board (it knows its PATH and user)."""
        s = self.settings
        serve = " ".join(["serve", f"{s.dir}/current", "--host", s.host, "--port", str(s.port),
                          *(_systemd_quote(a) for a in s.serve_args)])
        return ["[Unit]", f"Description=edgeskip adaptive inference server ({s.dir}/current)",
                "After=network-online.target", "", "[Service]", "Type=simple", "User=@USER@",
                f"WorkingDirectory={s.dir}", f"ExecStart=@EXE@ {serve}", "ExecReload=/bin/kill -HUP $MAINPID",
                "Restart=on-failure", "RestartSec=2", "", "[Install]", "WantedBy=multi-user.target"]

    def environment(self) -> dict[str, str]:
        return {"UNIT": UNIT_NAME, "UNIT_TEXT": "\n".join(self.unit_lines()), "SVC_PYTHON": self.settings.python or ""}


@SERVICE_MANAGERS.register("command")
class CommandService(ServiceManager):
    """A user-given command run with ``setsid nohup``: pid in ``DIR/edgeskip.pid``, output in ``DIR/service.log``."""

    script = "service_command.sh"

    def __init__(self, settings: ServiceSettings) -> None:
        if not settings.command:
            raise UsageError("the command service manager needs a service command, e.g. "
                             "'python3 -m edgeskip_runtime.cli serve {current} --port {port}'")
        super().__init__(settings)

    def command_line(self) -> str:
        s = self.settings
        values = {"current": f"{s.dir}/current", "dir": s.dir, "host": s.host, "port": s.port,
                  "python": s.board_python}
        return (s.command or "").format(**{k: q(v) for k, v in values.items()})

    def environment(self) -> dict[str, str]:
        return {"SVC_COMMAND": self.command_line()}


def _systemd_quote(arg: str) -> str:
    # systemd splits ExecStart like a shell (double quotes group); @ and | would clash with the sed above.
    if re.search(r"[\"\\|@\n%$]", arg):
        raise UsageError(f"server argument {arg!r} contains a character systemd or the unit template cannot carry",
                         setting="serve_arg")
    return f'"{arg}"' if re.search(r"\s", arg) else arg
