"""User networks by reference: the paper's framework "starts by reading in the user CNN (in PyTorch)"
(Korol et al., Sec. II-A.1), so every command takes a model as one of

* a **registered name** (``resnet20``; ``edgeskip list``);
* an **entry point** of the group ``edgeskip.models``, which an installed package declares, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."edgeskip.models"]
      my-resnet = "my_package.models:my_resnet"

* an **import reference** ``package.module:factory``, imported from the working directory, ``PYTHONPATH``
  or the installed packages (the working directory is put on ``sys.path`` first, as uvicorn does).

The factory is called with the data's ``in_channels`` and ``num_classes`` where its signature takes them,
and with the user's ``--model-arg key=value`` arguments. The checkpoint records the reference and every
argument passed, so later commands rebuild the network from the checkpoint alone.

**Security.** Weights are always read with ``torch.load(weights_only=True)``, which never runs code. A
checkpoint that names an entry point or an import reference is different: building its network *imports
that module and runs the factory*, the user's own code. Only load checkpoints whose model code you trust.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from edgeskip_runtime.errors import EdgeskipError, UsageError
from edgeskip_runtime.registry import UnknownNameError
from torch import nn

from edgeskip.models.registry import MODELS

ENTRY_POINT_GROUP = "edgeskip.models"
DATA_ARGS = ("in_channels", "num_classes")  # what a dataset tells a model; passed where the factory takes them
_IMPORT_REFERENCE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class ModelReferenceError(EdgeskipError, ValueError):
    """A model reference names nothing that can be built: unknown, not importable, or not a factory."""


def is_import_reference(ref: str) -> bool:
    return ":" in ref


def served_model_name(ref: str) -> str:
    """The name a bundle serves the model under (``/v2/models/{name}``): an import reference's factory name
    (``my_nets.vision:resnet18`` -> ``resnet18``), else the reference itself."""
    return ref.rpartition(":")[2].rpartition(".")[2] if is_import_reference(ref) else ref


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_model_references() -> list[str]:
    """Registered names and installed entry points (import references are open-ended)."""
    return sorted({*MODELS.names(), *_entry_points()})


def _import_factory(ref: str) -> Callable[..., nn.Module]:
    if not _IMPORT_REFERENCE.match(ref):
        raise ModelReferenceError(f"model reference {ref!r} is not of the form package.module:factory")
    module_name, _, attr_path = ref.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # the `edgeskip` script does not put it there; uvicorn does alike
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelReferenceError(
            f"cannot import module {module_name!r} of model {ref!r} ({e}); put its folder on PYTHONPATH or run "
            "from the folder that holds it, or install its package") from e
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelReferenceError(f"module {module_name!r} has no {attr_path!r} (model {ref!r})") from None
    if not callable(obj):
        raise ModelReferenceError(f"model {ref!r} names a {type(obj).__name__}, not a callable factory or class")
    return obj


def resolve_factory(ref: str) -> Callable[..., nn.Module]:
    """The factory a model reference names (registered name, entry point, or ``module:factory``)."""
    if is_import_reference(ref):
        return _import_factory(ref)
    if ref in MODELS:
        return MODELS.get(ref)
    entry = _entry_points().get(ref)
    if entry is not None:
        try:
            return _import_factory(entry.value)
        except ModelReferenceError as e:
            raise ModelReferenceError(f"entry point {ref!r} ({ENTRY_POINT_GROUP}) is broken: {e}") from e
    raise UnknownNameError(
        f"unknown model {ref!r}; registered or installed: {', '.join(list_model_references())}; or give your own "
        "as package.module:factory")


def _accepted(factory: Callable[..., Any], names: Iterable[str]) -> set[str]:
    """Which of ``names`` the factory's signature takes (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C extension: pass everything
        return set(names)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return set(names)
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} & set(names)


def model_arguments(ref: str, data_args: dict[str, Any], user_args: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments to build ``ref`` with: the data's where the factory takes them, then the user's.

    A user argument the factory does not take is refused here, before any training.
    """
    factory = resolve_factory(ref)
    unknown = set(user_args) - _accepted(factory, user_args)
    if unknown:
        raise UsageError(f"model {ref!r} takes no argument(s) {', '.join(sorted(unknown))}; its signature is "
                         f"{getattr(factory, '__name__', ref)}{inspect.signature(factory)}", setting="model_args")
    taken = _accepted(factory, DATA_ARGS)
    return {**{k: v for k, v in data_args.items() if k in taken}, **user_args}


def create_model(ref: str, **kwargs: Any) -> nn.Module:
    """Build the network ``ref`` names, e.g. ``create_model("resnet20", in_channels=1)`` or
    ``create_model("my_nets:resnet18", num_classes=10)``; the factory must return an ``nn.Module``."""
    factory = resolve_factory(ref)
    try:  # arguments that do not fit are the caller's error; what the factory itself raises is its own (a bug)
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        raise ModelReferenceError(f"model {ref!r} could not be built with {kwargs}: {e}") from e
    except ValueError:  # no signature to check (a builtin): let the call say
        pass
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelReferenceError(f"model {ref!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_model_args(items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings as keyword arguments; a value is read as JSON where it is JSON (``8``, ``0.5``,
    ``true``, ``[2, 2]``), else kept as a string."""
    args: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--model-arg wants KEY=VALUE with KEY a Python identifier, got {item!r}",
                             setting="model_args")
        if key in args:
            raise UsageError(f"--model-arg {key} is given twice", setting="model_args")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args
