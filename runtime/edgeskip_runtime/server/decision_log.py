"""Every scheduling decision as one JSON line, with size-based rotation (the dynamic-depth-
scheduling concept note: "log every decision"; enough to replay Algorithm 1, Sec. II-B).

Fields of each line:

* ``t``: wall clock (seconds since the epoch) when the line was queued;
* ``arrival``: the time of the event on the engine's monotonic clock: the request's arrival,
  which the policy decided with (``process``, ``drop``, ``queue``), or the completion
  (``done``), or when a ``reload`` or ``reject`` happened;
* ``request_id``, ``event`` (``process``: admitted and decided; ``drop``: refused because
  the worker was busy; ``queue``: waiting for the worker; ``done``: the inference finished,
  the device is free; ``reject``: bad input; ``reload``), ``policy``;
* ``state``: the policy's state after the event (for ``algorithm1``: ``current``,
  ``t_last``, and ``delta_req_ms``, the Δreq the last decision used);
* ``config`` (index in the Pareto file), ``n_skipped``, ``reason``.

Lines are written in decision order: the engine queues each record while it holds its
admission lock, and one background thread formats and writes them, so the serving path
pays for neither the JSON encoding nor the file write.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import threading
import time
from pathlib import Path
from typing import Any


class DecisionLog:
    def __init__(self, path: str | Path | None, *, max_bytes: int = 10 << 20, backups: int = 5) -> None:
        self.path = Path(path) if path else None
        self._logger: logging.Logger | None = None
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            logger = logging.getLogger(f"edgeskip.decisions.{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            self._logger = logger
            self._writer = threading.Thread(target=self._write_loop, name="edgeskip-decision-log", daemon=True)
            self._writer.start()

    @property
    def enabled(self) -> bool:
        return self._logger is not None

    def write(self, event: str, request_id: str | None, policy: str, state: dict[str, Any], config: int | None,
              n_skipped: int | None, reason: str, *, arrival: float | None = None) -> None:
        if self._logger is None:
            return
        self._queue.put({"t": time.time(), "arrival": arrival, "request_id": request_id, "event": event,
                         "policy": policy, "state": state, "config": config, "n_skipped": n_skipped,
                         "reason": reason})

    def _write_loop(self) -> None:
        assert self._logger is not None
        while (record := self._queue.get()) is not None:
            self._logger.info(json.dumps(record, default=str))
        for h in self._logger.handlers:
            h.flush()

    def close(self) -> None:
        if self._logger is None:
            return
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=10)
        for h in list(self._logger.handlers):
            h.close()
            self._logger.removeHandler(h)
        self._logger = None
