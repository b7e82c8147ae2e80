"""Policy registry: ``register_policy``, ``create_policy``, ``list_policies``."""

from __future__ import annotations

from collections.abc import Sequence

from edgeskip_runtime.policies.base import OperatingPoint, Policy, PolicySettings, ServiceTime
from edgeskip_runtime.registry import Registry

POLICIES: Registry[type[Policy]] = Registry("policy")


def register_policy(cls: type[Policy]) -> type[Policy]:
    return POLICIES.register(cls.name)(cls)


def list_policies() -> list[str]:
    return POLICIES.names()


def create_policy(name: str, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                  service: ServiceTime | None = None) -> Policy:
    return POLICIES.get(name)(points, settings, service)
