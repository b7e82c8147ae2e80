"""Depth policies (Korol et al., Sec. II-B, Algorithm 1, and the policies beyond it in README, "Serving")."""

from edgeskip_runtime.policies import (  # noqa: F401  (register)
    algorithm1,
    budget,
    load_aware,
    performance_aware,
    priority,
    static,
)
from edgeskip_runtime.policies.algorithm1 import Algorithm1Policy
from edgeskip_runtime.policies.base import (
    Decision,
    OperatingPoint,
    Policy,
    PolicyError,
    PolicySettings,
    Request,
    allowed_points,
)
from edgeskip_runtime.policies.registry import POLICIES, create_policy, list_policies, register_policy

__all__ = ["POLICIES", "Algorithm1Policy", "Decision", "OperatingPoint", "Policy", "PolicyError", "PolicySettings",
           "Request", "allowed_points", "create_policy", "list_policies", "register_policy"]
