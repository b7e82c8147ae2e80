"""Which CPU architecture family this machine runs, to refuse foreign bundles before IREE does.

IREE reports a foreign bundle only as "HAL device ... not found or unavailable"; comparing
families first turns that into a message that says what is wrong.
"""

from __future__ import annotations

import platform

from edgeskip_runtime.errors import UsageError

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


DRIVERS = ("local-sync", "local-task")
# IREE's local-task driver does not compile for 32-bit ARM: seven static asserts in
# runtime/src/iree/hal/drivers/local_task/block_isa.h fail (../shared/vendor/README.md). An armv7
# board's runtime has local-sync only.
UNAVAILABLE_DRIVERS = {"armv7": {"local-task": "IREE's local-task driver does not build for 32-bit ARM"}}


def drivers_for(family: str) -> list[str]:
    """The IREE CPU drivers a runtime for ``family`` can have."""
    return [d for d in DRIVERS if d not in UNAVAILABLE_DRIVERS.get(family, {})]


def choose_driver(requested: str | None, family: str | None = None) -> tuple[str, str | None]:
    """The driver to run with on ``family`` (default: this machine's) and, when that is not the one
    requested, a sentence saying why. ``None`` asks for the default, local-sync."""
    family = family or machine_family()
    if requested is None:
        return "local-sync", None
    if requested not in DRIVERS:
        raise UsageError(f"unknown driver {requested!r}; use one of {DRIVERS}", setting="driver")
    why = UNAVAILABLE_DRIVERS.get(family, {}).get(requested)
    if why is None:
        return requested, None
    return "local-sync", f"{requested} is not available on {family}: {why}; using local-sync"
