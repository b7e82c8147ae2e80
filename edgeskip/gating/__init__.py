"""Weightless skip gates and the skip-configuration array (Korol et al., Sec. II-A.2)."""

from edgeskip.gating.gates import GatedModel, SkipGate
from edgeskip.gating.skip_config import SkipConfig, SkipConfigError, check_cfg_tensor
from edgeskip.models.protocol import GateFollower

__all__ = ["GateFollower", "GatedModel", "SkipConfig", "SkipConfigError", "SkipGate", "check_cfg_tensor"]
