"""Pinning inference to a board's serving cores (Korol et al., Sec. III-B: inference pinned to a big core).

With the ``local-sync`` driver, inference runs on the calling thread, so the OS affinity of
that thread is what counts. With ``local-task``, IREE's worker threads are placed by the
``--task_topology_cpu_ids`` runtime flag, which must be set before the device is created.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence


def available_cores() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def pin_current_thread(cores: Sequence[int]) -> list[int]:
    """Restrict the calling thread to ``cores`` that exist here; returns the cores used ([] = not pinned)."""
    usable = sorted(set(cores) & available_cores())
    if not cores or not hasattr(os, "sched_setaffinity"):
        return []
    if not usable:
        warnings.warn(f"serving cores {list(cores)} do not exist on this machine; not pinning", stacklevel=2)
        return []
    os.sched_setaffinity(0, usable)  # pid 0: the calling thread
    return usable


def task_topology_flags(cores: Sequence[int]) -> list[str]:
    """IREE runtime flags that put local-task workers on ``cores``."""
    usable = sorted(set(cores) & available_cores())
    if not usable:
        return []
    return [f"--task_topology_cpu_ids={','.join(map(str, usable))}"]
