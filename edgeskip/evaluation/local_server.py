"""Start the real server (``edgeskip-runtime serve``) as a subprocess on loopback, e.g. for the
demo and the tests, and stop it again. The port is chosen by the OS and read from the
server's first line of output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from edgeskip_runtime.errors import EdgeskipError


class LocalServer:
    def __init__(self, bundle: str | Path, *args: str, host: str = "127.0.0.1",
                 python: Sequence[str] = (sys.executable,), env: dict[str, str] | None = None) -> None:
        """``python``: the interpreter command (e.g. an emulated board's: qemu, its sysroot, its python);
        ``env``: variables added to this process's environment (e.g. its PYTHONPATH)."""
        cmd = [*python, "-m", "edgeskip_runtime.cli", "serve", str(bundle), "--host", host, "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **env} if env else None)
        assert self.proc.stdout is not None
        self.preamble = ""  # what the server printed before it started serving (e.g. a driver fallback)
        while True:
            line = self.proc.stdout.readline()
            started = re.match(r"edgeskip serving (\S+) on http://\S+:(\d+) \((.*)\)$", line.strip())
            if started is not None or not line or line.startswith(("error", "Traceback")) or "stopped" in line:
                break
            self.preamble += line
        if started is None:
            self.proc.kill()
            raise EdgeskipError(f"the server did not start: {self.preamble}{line}{self.proc.stdout.read()}")
        self.model, self.port, self.summary = started.group(1), int(started.group(2)), started.group(3)
        self.url = f"http://{host}:{self.port}"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
