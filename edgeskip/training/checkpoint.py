"""Checkpoints: written atomically, loaded with ``weights_only=True``, self-describing.

A checkpoint records the model name and constructor arguments, the dataset and its
normalisation, and the recipe, so every later command (sensitivity, Pareto, export) needs
nothing but the file. It also holds the optimiser state and RNG state for ``--resume``.

Format ``edgeskip.checkpoint/1`` (a dict of plain Python values and tensors)::

    format, model, model_args{in_channels, num_classes, ...}, dataset, normalization{mean, std},
    input_shape[C, H, W], recipe, p_last, epoch, epochs, state_dict, metrics[...],
    train_config{...}, optimizer (optional), rng (optional)

``model`` is a registered name, an ``edgeskip.models`` entry point or a user's ``package.module:factory``
(:mod:`edgeskip.models.reference`); ``model_args`` are every keyword argument the factory was called with.
``dataset`` is a registered name or ``npz:PATH`` / ``folder:PATH`` with an absolute path.

Loading the file never runs code (``weights_only=True``). :meth:`Checkpoint.build_model` does, where the
model is an entry point or an import reference: it imports that module and calls the factory. Only build
networks from checkpoints whose model code you trust.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from edgeskip_runtime.atomic import atomic_path
from edgeskip_runtime.errors import EdgeskipError
from torch import nn

from edgeskip.data.base import Normalization
from edgeskip.models import create_model

FORMAT = "edgeskip.checkpoint/1"


class CheckpointError(EdgeskipError, RuntimeError):
    """A checkpoint is missing, corrupt or not an edgeskip checkpoint."""


@dataclass
class Checkpoint:
    model: str
    model_args: dict[str, Any]
    dataset: str
    normalization: Normalization
    input_shape: list[int]
    state_dict: dict[str, torch.Tensor]
    recipe: str = "standard"
    p_last: float | None = None
    epoch: int = 0
    epochs: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_config: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None

    def build_model(self) -> nn.Module:
        """The trained network in eval mode, with its weights loaded.

        For a user model this imports its module and runs its factory (see the module docstring).
        """
        from edgeskip.training.recipes import trained_architecture

        model = trained_architecture(self.recipe, create_model(self.model, **self.model_args), self.train_config)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint's weights do not fit the network {self.model!r} builds now with "
                                  f"{self.model_args} (did its code change?): {e}") from e
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["normalization"] = self.normalization.to_dict()
        return {"format": FORMAT, **d}

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(self.to_dict(), tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {e}") from e
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path} is not an {FORMAT} checkpoint (found {found!r})")
    raw = dict(raw)
    raw.pop("format")
    try:
        raw["normalization"] = Normalization(**raw["normalization"])
        return Checkpoint(**raw)
    except (TypeError, KeyError) as e:
        raise CheckpointError(f"{path} is missing fields of {FORMAT}: {e}") from e
