"""Which CPU architecture family this machine runs, to refuse foreign bundles before IREE does.

IREE reports a foreign bundle only as "HAL device ... not found or unavailable"; comparing
families first turns that into a message that says what is wrong.
"""

from __future__ import annotations

import platform

_FAMILIES = {
    "x86_64": "x86_64", "amd64": "x86_64",
    "aarch64": "aarch64", "arm64": "aarch64",
    # 32-bit ARM userlands; armv8l is a 32-bit process on a 64-bit ARM core, which runs armv7 code.
    "armv7l": "armv7", "armv7a": "armv7", "armv7": "armv7", "armv8l": "armv7", "armhf": "armv7",
}


def arch_family(name: str) -> str:
    """Normalise ``platform.machine()``-style names and triple prefixes to a family."""
    key = name.lower().split("-")[0]
    return _FAMILIES.get(key, key)


def machine_family() -> str:
    return arch_family(platform.machine())
