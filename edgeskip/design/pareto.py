"""The Pareto front of skip configurations (Korol et al., Sec. II-A.4).

The format, filter and hypervolume live in :mod:`edgeskip_runtime.pareto` because the
board reads and re-filters the same file (``profile``); this module is the design-time name.
"""

from edgeskip_runtime.pareto import (
    SCHEMA,
    ConfigPoint,
    ParetoFileError,
    ParetoFront,
    dominates,
    hypervolume,
    pareto_filter,
)

__all__ = ["SCHEMA", "ConfigPoint", "ParetoFileError", "ParetoFront", "dominates", "hypervolume", "pareto_filter"]
