"""Energy of the serving board: a power sensor when there is one, else the target's power model
(Korol et al., Sec. III-B measured energy with an external power analyser; Table I reports
processed inferences per Watt).

Sensors tried, in order: Linux powercap (``/sys/class/powercap/*/energy_uj``, e.g. Intel
RAPL, cumulative microjoules with wrap-around) and hwmon energy counters
(``/sys/class/hwmon/hwmon*/energy*_input``, microjoules). Without a readable sensor the
energy is *estimated* from the bundle's target power figures:
``E = P_board_idle · wall + (P_core_busy − P_core_idle) · busy``, where ``busy`` is the time
the worker spent in the compiled module; the source says ``model`` and ``estimate: true``.
"""

from __future__ import annotations

import glob
import threading
import time
from pathlib import Path
from typing import Any


class _CounterSensor:
    """A cumulative microjoule counter file, unwrapped."""

    def __init__(self, path: Path, max_uj: int | None) -> None:
        self.path = path
        self.max_uj = max_uj
        self._last = self._read()
        self._total_uj = 0

    def _read(self) -> int:
        return int(self.path.read_text().strip())

    def joules(self) -> float:
        now = self._read()
        delta = now - self._last
        if delta < 0 and self.max_uj:  # the counter wrapped
            delta += self.max_uj
        self._last = now
        self._total_uj += max(delta, 0)
        return self._total_uj / 1e6


def _find_sensor() -> tuple[_CounterSensor, str] | None:
    for zone in sorted(glob.glob("/sys/class/powercap/*/energy_uj")):
        p = Path(zone)
        try:
            max_uj = int((p.parent / "max_energy_range_uj").read_text().strip())
            return _CounterSensor(p, max_uj), f"powercap:{p.parent.name}"
        except (OSError, ValueError):
            continue
    for f in sorted(glob.glob("/sys/class/hwmon/hwmon*/energy*_input")):
        try:
            return _CounterSensor(Path(f), None), f"hwmon:{Path(f).parent.name}/{Path(f).name}"
        except (OSError, ValueError):
            continue
    return None


# For a target without power figures (e.g. ``host``): an explicit, labelled nominal model, so
# ratios between runs on the same machine stay meaningful while absolute joules are not.
NOMINAL_POWER = {"board_idle_w": 0.0, "cores": {"big": {"idle_w": 0.0, "busy_w": 10.0}},
                 "source": "nominal 10 W per busy core: no power figures for this target"}


def power_terms(power: dict[str, Any] | None) -> tuple[float, float]:
    """``(board idle W, serving core's busy minus idle W)`` of a target's power figures (nominal if none)."""
    power = power or NOMINAL_POWER
    cores = power.get("cores", {})
    serving = cores.get("big") or (next(iter(cores.values())) if cores else {"idle_w": 0.0, "busy_w": 0.0})
    return float(power.get("board_idle_w") or 0.0), float(serving["busy_w"]) - float(serving["idle_w"])


def inference_energy_j(power: dict[str, Any] | None, latency_s: float) -> float:
    """Modelled energy of one inference of ``latency_s`` back to back (wall = busy): an estimate."""
    idle_w, dynamic_w = power_terms(power)
    return (idle_w + dynamic_w) * latency_s


class EnergyMeter:
    """Cumulative joules since the meter started, from a sensor or the power model."""

    def __init__(self, power: dict[str, Any] | None, *, use_sensor: bool = True) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._busy_s = 0.0
        self.power = power or NOMINAL_POWER
        found = _find_sensor() if use_sensor else None
        self._sensor = found[0] if found else None
        self.source = found[1] if found else ("model" if power else "model:nominal")
        self.estimate = self._sensor is None
        self._idle_w, self._dynamic_w = power_terms(self.power)

    def add_busy(self, seconds: float) -> None:
        with self._lock:
            self._busy_s += seconds

    @property
    def busy_seconds(self) -> float:
        return self._busy_s

    def joules(self) -> float:
        with self._lock:
            if self._sensor is not None:
                try:
                    return self._sensor.joules()
                except OSError:  # the sensor went away: fall back, and say so
                    self._sensor, self.source, self.estimate = None, "model", True
            wall = time.monotonic() - self._start
            return self._idle_w * wall + self._dynamic_w * self._busy_s
