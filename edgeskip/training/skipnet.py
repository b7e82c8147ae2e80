"""Training SkipNet from a standard checkpoint (Wang et al., ECCV 2018, Sec. 3.3; Korol et al., Sec. III-A).

Two stages, as SkipNet's CIFAR code runs them (``ucbdrive/skipnet``, ``cifar/train_sp.py`` and
``cifar/train_rl.py``):

1. **Supervised pre-training** (``sp_epochs``): the network and its new gates are trained on the
   cross-entropy alone, the gates with hard decisions forward and the softmax's gradient backward.
2. **Hybrid reinforcement learning** (``rl_epochs``): each gate samples its action from its softmax.
   Skipping earns ``alpha / num_gates`` at that gate; the final reward is the image's negative
   cross-entropy; with discount 1 each gate's return is the sum of the rewards from it on. The loss is
   the mean cross-entropy plus REINFORCE's ``-rl_weight * return * log pi(action)``, summed over the
   gates and the images of the batch as SkipNet's ``action.reinforce`` did, written here for current
   PyTorch (``torch.distributions``) instead of PyTorch 0.2's stochastic functions.

Defaults follow SkipNet (RL: lr 1e-4, momentum 0.9, weight decay 1e-4, alpha 0.1, rl_weight 0.01) except
the epochs, chosen to fit a 2-core CPU (the README gives the runs). The checkpoint is an ordinary
``edgeskip.checkpoint`` with recipe ``skipnet``: :meth:`Checkpoint.build_model` rebuilds the gates.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.baselines.skipnet import GATE_TYPES, SkipNet
from edgeskip.data import load_dataset
from edgeskip.data.base import ImageSet, Normalization, iterate_batches
from edgeskip.progress import progress_bar
from edgeskip.training.checkpoint import Checkpoint, load_checkpoint
from edgeskip.training.distributed import refuse_under_torchrun
from edgeskip.training.loop import EpochStats, check_precision, mixed_precision, sgd_step
from edgeskip.training.schedules import SCHEDULES


@dataclass
class SkipNetConfig:
    standard: str  # the standard-trained checkpoint SkipNet starts from
    gate_type: str | None = None  # default: SkipNet's choice for the depth
    sp_epochs: int = 2
    rl_epochs: int = 2
    batch_size: int = 128
    sp_lr: float = 0.01
    rl_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    alpha: float = 0.1  # total reward for skipping every gate
    rl_weight: float = 0.01
    seed: int = 0
    device: str = "cpu"
    limit: int | None = None
    data_dir: str | None = None
    precision: str = "fp32"  # or "bf16": mixed-precision forward and loss (edgeskip.training.loop)

    def validate(self) -> None:
        check_precision(self.precision)
        if self.gate_type is not None and self.gate_type not in GATE_TYPES:
            raise UsageError(f"unknown SkipNet gate type {self.gate_type!r}; use one of {sorted(GATE_TYPES)}",
                             setting="gate_type")
        if self.sp_epochs < 0 or self.rl_epochs < 0 or self.sp_epochs + self.rl_epochs < 1:
            raise UsageError("SkipNet needs at least one epoch of supervised or RL training", setting="rl_epochs")


@dataclass(frozen=True)
class SkipNetEvaluation:
    accuracy: float
    mean_skipped: float  # gated blocks skipped per image, on average
    skipped_histogram: dict[int, int]  # skipped blocks -> images


@torch.no_grad()
def evaluate_skipnet(net: SkipNet, data: ImageSet, normalization: Normalization, *, batch_size: int = 500,
                     device: str = "cpu") -> SkipNetEvaluation:
    """Accuracy and the per-image number of skipped blocks under hard decisions."""
    net.eval()
    net.mode = "hard"
    correct, hist = 0, {}
    for x, y in iterate_batches(data, normalization, batch_size, device=device):
        correct += (net(x).argmax(1) == y).sum().item()
        skipped = (1 - net.trace.run_matrix()).sum(1).long().tolist()
        for k in skipped:
            hist[k] = hist.get(k, 0) + 1
    n = max(len(data), 1)
    return SkipNetEvaluation(correct / n, sum(k * v for k, v in hist.items()) / n, dict(sorted(hist.items())))


def reinforce_loss(net: SkipNet, logits: torch.Tensor, labels: torch.Tensor, alpha: float,
                   rl_weight: float) -> torch.Tensor:
    """SkipNet's hybrid loss for one batch traced in ``reinforce`` mode."""
    ce = nn.functional.cross_entropy(logits, labels, reduction="none")
    runs = net.trace.run_matrix()  # (N, G): 1 ran, 0 skipped
    log_probs = torch.stack(net.trace.log_probs, 1)
    gate_rewards = (1 - runs) * (alpha / net.num_gates)
    # Return from gate i: its reward and every later one's, plus the final -CE (discount 1).
    returns = gate_rewards.flip(1).cumsum(1).flip(1) + (-ce.detach()).unsqueeze(1)
    return ce.mean() - rl_weight * (returns * log_probs).sum()


def train_skipnet(config: SkipNetConfig, out: str | Path, *, progress: bool = True) -> Checkpoint:
    """Build SkipNet on ``config.standard``'s network, train both stages, write the checkpoint to ``out``."""
    config.validate()
    refuse_under_torchrun("SkipNet (its reinforcement-learning stage samples per image)")
    out = Path(out)
    standard = load_checkpoint(config.standard)
    if standard.recipe != "standard":
        raise UsageError(f"{config.standard} was trained with recipe {standard.recipe!r}; SkipNet starts from a "
                         "standard checkpoint", setting="standard")
    cfg = standard.train_config
    data = load_dataset(standard.dataset, config.data_dir, val_fraction=cfg.get("val_fraction", 0.1),
                        seed=cfg.get("seed", 0), limit=config.limit)
    data.normalization = standard.normalization
    torch.manual_seed(config.seed)
    net = SkipNet(standard.build_model(), config.gate_type).to(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    steps = -(-len(data.train) // config.batch_size)
    metrics: list[dict[str, Any]] = []
    stages = [("supervised", config.sp_epochs, config.sp_lr), ("reinforce", config.rl_epochs, config.rl_lr)]
    with progress_bar(progress) as bar:
        for stage, epochs, lr0 in stages:
            if epochs == 0:
                continue
            optimizer = torch.optim.SGD(net.parameters(), lr=lr0, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
            schedule = SCHEDULES.get("cosine")
            task = bar.add_task(f"skipnet {stage}", total=epochs * steps, info="")
            for epoch in range(epochs):
                net.train()
                net.mode = stage
                t0, stats = time.perf_counter(), EpochStats()
                batches = iterate_batches(data.train, data.normalization, config.batch_size, shuffle=True,
                                          augment=True, generator=generator, device=config.device)
                for step, (x, y) in enumerate(batches):
                    lr = lr0 * schedule((epoch * steps + step) / (epochs * steps))
                    with mixed_precision(config.device, config.precision):
                        logits = net(x)
                        if stage == "reinforce":
                            loss = reinforce_loss(net, logits, y, config.alpha, config.rl_weight)
                        else:
                            loss = nn.functional.cross_entropy(logits, y)
                    sgd_step(optimizer, loss, lr)
                    stats.add(loss, logits, y)
                    skipped = (1 - net.trace.run_matrix()).sum(1).float().mean().item()
                    bar.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} acc {stats.accuracy:.3f} "
                                                     f"skipped {skipped:.2f}")
                val = evaluate_skipnet(net, data.val, data.normalization, device=config.device)
                record = {"stage": stage, "epoch": epoch + 1, "train_loss": stats.loss,
                          "train_accuracy": stats.accuracy, "val_accuracy": val.accuracy,
                          "val_mean_skipped": val.mean_skipped, "seconds": time.perf_counter() - t0}
                metrics.append(record)
                bar.console.log(f"{stage} epoch {epoch + 1}: val acc {val.accuracy:.4f}, "
                                f"{val.mean_skipped:.2f} of {net.num_gates} blocks skipped")
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    train_config = {**cfg, **asdict(config), "recipe": "skipnet", "gate_type": net.gate_type}
    checkpoint = Checkpoint(model=standard.model, model_args=standard.model_args, dataset=standard.dataset,
                            normalization=standard.normalization, input_shape=standard.input_shape,
                            state_dict=state, recipe="skipnet", epoch=config.sp_epochs + config.rl_epochs,
                            epochs=config.sp_epochs + config.rl_epochs, metrics=metrics, train_config=train_config)
    checkpoint.save(out)
    with open(out.with_suffix(".metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in metrics)
    return checkpoint


__all__ = ["SkipNetConfig", "SkipNetEvaluation", "evaluate_skipnet", "reinforce_loss", "train_skipnet"]
