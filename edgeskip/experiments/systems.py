"""The three systems of the paper's comparison (Korol et al., Sec. III-A), as compiled bundles of one model:
the Original (standard checkpoint, ``compile --full-depth-only``), SkipNet (self-gated) and Ours (the
stochastic-depth Pareto bundle). Figure 6 and Table I open them here, once, checked for their roles."""

from __future__ import annotations

from pathlib import Path

from edgeskip_runtime.bundle import Bundle
from edgeskip_runtime.errors import UsageError


def open_systems(ours: str | Path, original: str | Path, skipnet: str | Path) -> dict[str, Bundle]:
    """Role -> opened bundle; refuses bundles of different models or in the wrong role."""
    bundles = {"Original": Bundle.open(original), "SkipNet": Bundle.open(skipnet), "Ours": Bundle.open(ours)}
    models = {(b.manifest.model, b.manifest.dataset) for b in bundles.values()}
    if len(models) != 1:
        raise UsageError(f"the three bundles must be one model on one dataset, got {sorted(models)}")
    if not bundles["SkipNet"].manifest.self_gated:
        raise UsageError(f"{skipnet} is not a self-gated (SkipNet) bundle", setting="skipnet")
    front = bundles["Original"].pareto.configs
    if len(front) != 1 or front[0].n_skipped:
        raise UsageError(f"{original} is not a full-depth-only bundle (`edgeskip compile --full-depth-only`)",
                         setting="original")
    if len(bundles["Ours"].pareto.configs) < 2:
        raise UsageError(f"{ours} has one operating point: Ours needs a Pareto front", setting="ours")
    return bundles
