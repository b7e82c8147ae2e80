"""Learning-rate schedules as a factor of the base rate at a fraction of training.

``step`` is the paper's schedule (Korol et al., Sec. III-A: 0.1 for 250 of 500 epochs, 0.01
for the next 175, 1e-4 until the end) expressed as fractions so it scales to any length;
``cosine`` anneals smoothly to zero. Stateless, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from edgeskip_runtime.registry import Registry

Schedule = Callable[[float], float]
SCHEDULES: Registry[Schedule] = Registry("schedule")


@SCHEDULES.register("step")
def step(progress: float) -> float:
    if progress < 250 / 500:
        return 1.0
    if progress < 425 / 500:
        return 0.1
    return 1e-3


@SCHEDULES.register("cosine")
def cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
