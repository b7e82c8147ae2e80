"""The training loop behind ``edgeskip train`` (Korol et al., Sec. II-A.1, Step 1 of Fig. 3).

SGD with momentum and weight decay, a step or cosine schedule, random-crop and flip
augmentation, a rich progress bar, a JSON-lines metrics log and an atomic checkpoint after
every epoch that ``resume=True`` continues from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.accuracy import evaluate
from edgeskip.data import canonical_dataset_name, load_dataset
from edgeskip.data.base import iterate_batches
from edgeskip.models import create_model
from edgeskip.models.protocol import check_skippable
from edgeskip.models.reference import model_arguments
from edgeskip.progress import progress_bar
from edgeskip.training.checkpoint import Checkpoint, load_checkpoint
from edgeskip.training.distributed import (
    DistributedContext,
    check_in_sync,
    convert_batch_norms,
    data_parallel,
    device_for,
    process_group,
    reduce_stats,
)
from edgeskip.training.gated_depth import GatedDepthOptions
from edgeskip.training.loop import EpochStats, check_precision, mixed_precision, sgd_step
from edgeskip.training.recipes import RECIPES, RecipeOptions, cross_entropy, trained_architecture
from edgeskip.training.schedules import SCHEDULES
from edgeskip.training.stochastic_depth import remove_stochastic_depth


@dataclass
class TrainConfig:
    model: str = "resnet20"  # a registered name, an edgeskip.models entry point, or package.module:factory
    model_args: dict[str, Any] = field(default_factory=dict)  # the user's keyword arguments to the factory
    dataset: str = "fashion-mnist"
    recipe: str = "stochastic-depth"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    p_last: float = 0.5
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None
    data_dir: str | None = None
    val_fraction: float = 0.1
    channels_last: bool = True  # about 1.4x faster training on CPU for these small convs
    # Linear learning-rate warm-up over the first epochs: ResNet-110 at lr 0.1 from the first step did not
    # learn here (epoch 1: 18 % validation accuracy, loss above chance), as He et al. (2016, Sec. 4.2) found
    # and answered with a warm-up at lr 0.01; SkipNet warms its 110-layer nets up too.
    warmup_epochs: float = 0.0
    precision: str = "fp32"  # or "bf16": mixed-precision forward and loss (edgeskip.training.loop)
    # gated-depth (edgeskip.training.gated_depth): gating probabilities, their schedule, self-distillation
    gd_p_min: float = 0.5
    gd_p_max: float = 0.9
    gd_schedule: str = "stage"
    distill_every: int = 10
    distill_alpha: float = 0.5

    def gated_depth_options(self) -> GatedDepthOptions:
        return GatedDepthOptions(p_min=self.gd_p_min, p_max=self.gd_p_max, schedule=self.gd_schedule,
                                 distill_every=self.distill_every, distill_alpha=self.distill_alpha)

    def validate(self) -> None:
        check_precision(self.precision)
        if self.recipe == "gated-depth":
            self.gated_depth_options().validate()
        RECIPES.get(self.recipe)
        SCHEDULES.get(self.schedule)
        if self.epochs < 1:
            raise UsageError(f"epochs must be at least 1, got {self.epochs}", setting="epochs")
        if self.warmup_epochs < 0:
            raise UsageError(f"warm-up epochs must be >= 0, got {self.warmup_epochs}", setting="warmup_epochs")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}", setting="batch_size")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("device cuda was asked for, but PyTorch sees no CUDA device here", setting="device")


def metrics_log_path(out: Path) -> Path:
    return out.with_suffix(".metrics.jsonl")


def _compatible(resumed: Checkpoint, config: TrainConfig) -> None:
    for key in ("model", "model_args", "dataset", "recipe", "seed", "batch_size", "schedule", "lr", "warmup_epochs",
                "gd_p_min", "gd_p_max", "gd_schedule", "distill_every", "distill_alpha"):
        old = resumed.train_config.get(key, asdict(TrainConfig()).get(key))  # keys added later: their default
        if old != getattr(config, key):
            raise UsageError(f"cannot resume: checkpoint was trained with {key}={old!r}, now {getattr(config, key)!r}")


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          on_epoch_end: Callable[[int], None] | None = None) -> Checkpoint:
    """Train ``config.model`` on ``config.dataset`` and write the checkpoint to ``out``.

    Launched by ``torchrun``, every process trains its share of each global batch under DDP and rank 0 writes
    the checkpoint (:mod:`edgeskip.training.distributed`). ``on_epoch_end(epoch)`` runs after each epoch's
    checkpoint is written (on rank 0).
    """
    config.validate()
    with process_group(config.device) as context:
        return _train(config, Path(out), context, resume=resume, progress=progress and context.is_main,
                      on_epoch_end=on_epoch_end)


def _train(config: TrainConfig, out: Path, context: DistributedContext, *, resume: bool, progress: bool,
           on_epoch_end: Callable[[int], None] | None) -> Checkpoint:
    config.dataset = canonical_dataset_name(config.dataset)
    device = device_for(config.device, context)
    data = load_dataset(config.dataset, config.data_dir, val_fraction=config.val_fraction, seed=config.seed,
                        limit=config.limit)
    if context.world_size > config.batch_size:
        raise UsageError(f"a global batch of {config.batch_size} cannot be shared by {context.world_size} processes",
                         setting="batch_size")
    model_args = model_arguments(config.model, {"in_channels": data.in_channels, "num_classes": data.num_classes},
                                 config.model_args)
    torch.manual_seed(config.seed)
    plain = create_model(config.model, **model_args)
    check_skippable(plain, data.image_shape, data.num_classes)  # a violation is named now, not at export
    # The recipe's architecture first (gated-depth splits the stages), so that a resumed state dict fits.
    model = trained_architecture(config.recipe, plain, asdict(config))

    resumed = load_checkpoint(out) if resume and out.exists() else None
    if resumed is not None:
        _compatible(resumed, config)
        model.load_state_dict(resumed.state_dict)
    generator = torch.Generator().manual_seed(config.seed)  # data order and augmentation: alike on every rank
    drop_generator = torch.Generator().manual_seed(config.seed + 1)  # stochastic-depth / gating draws: alike too
    objective = RECIPES.get(config.recipe)(
        model, RecipeOptions(p_last=config.p_last, gated_depth=config.gated_depth_options()), drop_generator
    ) or cross_entropy
    if context.enabled:
        convert_batch_norms(model)  # statistics of the global batch, as one process computes them
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    # Under torchrun the step runs through `net` and `synchronise` (they average the gradients); evaluation and
    # snapshots use `model`.
    net, synchronise = data_parallel(model, config.recipe, context, device)

    warmup_steps = round(config.warmup_epochs * -(-len(data.train) // config.batch_size))

    def warmup(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=False)
    schedule = SCHEDULES.get(config.schedule)
    steps_per_epoch = -(-len(data.train) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    metrics: list[dict[str, Any]] = []
    start_epoch = 0
    if resumed is not None:
        start_epoch, metrics = resumed.epoch, list(resumed.metrics)
        if resumed.optimizer:
            optimizer.load_state_dict(resumed.optimizer)
        if resumed.rng:
            generator.set_state(resumed.rng["data"])
            drop_generator.set_state(resumed.rng["drop"])
    log_path = metrics_log_path(out)
    if context.is_main:
        out.parent.mkdir(parents=True, exist_ok=True)
        if resumed is None and log_path.exists():
            log_path.unlink()

    checkpoint = resumed
    with progress_bar(progress) as bar:
        task = bar.add_task(f"train {config.model}/{config.recipe}", total=total_steps,
                            completed=start_epoch * steps_per_epoch, info="")
        for epoch in range(start_epoch, config.epochs):
            model.train()
            t0, stats = time.perf_counter(), EpochStats()
            batches = iterate_batches(data.train, data.normalization, config.batch_size, shuffle=True,
                                      augment=True, generator=generator, device=device)
            for step, (x, y) in enumerate(batches):
                done = epoch * steps_per_epoch + step
                lr = config.lr * schedule(done / total_steps) * warmup(done)
                share = context.shard(len(y))  # this rank's part of the global batch
                x, y, global_n = x[share].contiguous(memory_format=memory_format), y[share], len(y)
                with mixed_precision(device, config.precision):
                    loss, logits = objective(net, x, y, done, done / total_steps)
                # The ranks' gradients are averaged: weighting each rank's mean by its share makes that average
                # the gradient of the global batch's mean loss, also for an uneven last batch (one process: 1.0).
                sgd_step(optimizer, loss * (len(y) * context.world_size / global_n), lr, synchronise)
                stats.add(loss, logits, y)
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{config.epochs} loss {stats.loss:.3f} "
                                                 f"acc {stats.accuracy:.3f} lr {lr:.4f}")
            train_seconds = time.perf_counter() - t0
            model.eval()
            stats = reduce_stats(stats, context)
            rng = {"data": generator.get_state(), "drop": drop_generator.get_state()}
            digest = check_in_sync(_plain(model), context) if context.enabled else None
            if context.is_main:
                val_acc, val_loss, _ = evaluate(model, data.val, data.normalization, device=device)
                record = {"epoch": epoch + 1, "train_loss": stats.loss, "train_accuracy": stats.accuracy,
                          "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr, "seconds": train_seconds,
                          "train_images": stats.seen, "train_images_per_s": stats.seen / train_seconds}
                if context.enabled:
                    record |= {"world_size": context.world_size, "weights_sha256": digest}
                metrics.append(record)
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.console.log(f"epoch {epoch + 1}: train acc {record['train_accuracy']:.4f}, val acc {val_acc:.4f}, "
                                f"{record['train_images_per_s']:.0f} img/s")
                checkpoint = _snapshot(model, config, data, model_args, epoch + 1, metrics, optimizer, rng)
                checkpoint.save(out)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1)
            context.barrier()  # the other ranks wait for the checkpoint, so a --resume finds it whole
    if not context.is_main:  # it wrote nothing: the weights all ranks agreed on
        return _snapshot(model, config, data, model_args, config.epochs, metrics, optimizer, {})
    assert checkpoint is not None
    return checkpoint


USES_P_LAST = ("stochastic-depth", "gated-depth-hybrid")  # the recipes that drop blocks with survival down to p_L


def _snapshot(model: nn.Module, config: TrainConfig, data, model_args: dict[str, Any], epoch: int,
              metrics: list[dict[str, Any]], optimizer: torch.optim.Optimizer, rng: dict[str, Any]) -> Checkpoint:
    plain = _plain(model)
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format).clone()
             for k, v in plain.state_dict().items()}
    return Checkpoint(
        model=config.model, model_args=model_args, dataset=config.dataset, normalization=data.normalization,
        input_shape=list(data.image_shape), state_dict=state, recipe=config.recipe,
        p_last=config.p_last if config.recipe in USES_P_LAST else None, epoch=epoch,
        epochs=config.epochs, metrics=metrics, train_config=asdict(config),
        optimizer=optimizer.state_dict(), rng=rng,
    )


def _plain(model: nn.Module) -> nn.Module:
    """The network the checkpoint holds: a copy without the training-only wrappers (shares the weights)."""
    return remove_stochastic_depth(_shallow_copy(model))


def _shallow_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that shares parameters (cheap), so unwrapping leaves ``model`` intact."""
    import copy

    clone = copy.copy(model)
    clone._modules = {k: _shallow_copy(m) for k, m in model._modules.items()}  # type: ignore[assignment]
    return clone
