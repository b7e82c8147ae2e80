"""Every scheduling decision as one JSON line, with size-based rotation (dynamic-depth-scheduling
note: "log every decision").

Fields: ``t`` (wall clock), ``mono`` (monotonic seconds), ``request_id``, ``event``
(``process``, ``drop``, ``queue``, ``reject``, ``reload``), ``policy``, ``state`` (the
policy's state after the decision), ``config`` (index in the Pareto file), ``n_skipped``,
``reason``.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import threading
import time
from pathlib import Path
from typing import Any


class DecisionLog:
    def __init__(self, path: str | Path | None, *, max_bytes: int = 10 << 20, backups: int = 5) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._logger: logging.Logger | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            logger = logging.getLogger(f"edgeskip.decisions.{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            self._logger = logger

    @property
    def enabled(self) -> bool:
        return self._logger is not None

    def write(self, event: str, request_id: str | None, policy: str, state: dict[str, Any], config: int | None,
              n_skipped: int | None, reason: str) -> None:
        if self._logger is None:
            return
        record = {"t": time.time(), "mono": time.monotonic(), "request_id": request_id, "event": event,
                  "policy": policy, "state": state, "config": config, "n_skipped": n_skipped, "reason": reason}
        with self._lock:
            self._logger.info(json.dumps(record, default=str))

    def close(self) -> None:
        if self._logger is not None:
            for h in list(self._logger.handlers):
                h.close()
                self._logger.removeHandler(h)
