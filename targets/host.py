"""This machine: code generated for the host CPU (``cpu=host``), for tests, benchmarks and x86 servers.

A ``host`` bundle only runs on a CPU with the same features as the one that compiled it.
"""

import os
import platform

from . import Target, register_target

_ARCH = platform.machine() or "x86_64"
_CORES = (tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity")
          else tuple(range(os.cpu_count() or 1)))

register_target(Target(
    name="host",
    description=f"this machine ({_ARCH}, {len(_CORES)} cores), code for its own CPU",
    triple=f"{_ARCH}-unknown-linux-gnu",
    cpu="host",  # 'generic' is ~7x slower on x86 (toolchain facts): always name the real CPU
    features=(),
    float_abi=None,
    arch=_ARCH,
    big_cores=_CORES,
    serving_cores=_CORES[-1:],
    power=None,  # unknown for a virtual or server CPU; the energy model needs measured figures here
))
