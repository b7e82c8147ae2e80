"""Data-parallel training under ``torchrun`` (PyTorch DDP): the same Step 1 of the paper's flow (Korol et al.,
Sec. II-A.1, Fig. 3) on several processes, on one machine or many.

``edgeskip train`` notices torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``)
and joins the process group: gloo on CPU, nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).

What makes N processes train the network one process would, with the same global batch:

* **The data split** is ``DistributedSampler``'s: every rank draws the same seeded permutation and the same
  augmentation for the global batch, and takes the interleaved share ``rank::world_size`` of it. The global
  batch is ``--batch-size``, as in a one-process run; each rank computes ``batch_size / world_size`` images.
* **The loss** of each rank is scaled by its share of the global batch, so DDP's gradient average equals the
  one-process gradient of the global batch's mean loss, also for a last batch that does not divide evenly.
* **Batch norm** sees the global batch: every ``BatchNorm2d`` becomes :class:`DistributedBatchNorm2d`, which
  all-reduces its sums (differentiably) before normalising. PyTorch's ``SyncBatchNorm`` does this on GPUs only.
* **Stochastic-depth drops** come from a generator seeded alike on every rank, so every rank drops the same
  blocks in a step; :func:`check_in_sync` compares a digest of the weights across ranks after every epoch.
* **Only rank 0** evaluates, logs and writes the checkpoint (atomically); ``--resume`` loads it on every rank.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from edgeskip_runtime.errors import EdgeskipError, UsageError
from torch import nn

from edgeskip.training.loop import EpochStats


class DistributedError(EdgeskipError, RuntimeError):
    """The process group could not start, or the ranks stopped training the same network."""


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: one process (world size 1) when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's share of a global batch of ``n`` images (DistributedSampler's interleaving)."""
        return slice(self.rank, n, self.world_size)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def relaunch_under_torchrun(nproc_per_node: int, command: str) -> int:
    """Run this ``edgeskip COMMAND ...`` again as ``torchrun --standalone --nproc-per-node N -m edgeskip ...``
    (one machine, a free loopback port); returns torchrun's exit status."""
    from torch.distributed.run import main as torchrun

    args, skip = [], False
    for arg in sys.argv[sys.argv.index(command):]:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            args.append(arg)
    try:
        torchrun(["--standalone", "--nproc-per-node", str(nproc_per_node), "-m", "edgeskip", *args])
    except Exception as e:
        print(f"error: distributed training failed: {e}", file=sys.stderr)
        return 1
    return 0


def device_for(device: str, context: DistributedContext) -> torch.device:
    """One GPU per process under torchrun (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    if context.enabled and device == "cuda":
        return torch.device("cuda", context.local_rank)
    return torch.device(device)


@contextlib.contextmanager
def process_group(device: str) -> Iterator[DistributedContext]:
    """Join torchrun's process group for the duration (gloo on CPU, nccl on CUDA); a no-op for one process."""
    if not launched_by_torchrun():
        yield DistributedContext()
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    context = DistributedContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                                 int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(context.local_rank)
    # DistributedBatchNorm2d's differentiable all-reduce; its suggested successor has no autograd.
    warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated",
                            category=FutureWarning)
    try:
        dist.init_process_group(backend)
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"rank {context.rank} could not join the {backend} process group: {e}") from e
    try:
        yield context
    finally:
        dist.destroy_process_group()


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the global batch across all ranks.

    The per-channel sums are all-reduced with ``torch.distributed.nn.functional.all_reduce``, which carries the
    gradient back to every rank, so forward and backward match one process computing the whole batch. In
    evaluation, or without a process group, it is a plain ``BatchNorm2d`` (same parameters, same buffers).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xd = x.double()  # sums in float64: E[x^2] - E[x]^2 loses nothing that matters to the float32 result
        count = torch.full((1,), xd.numel() / c, dtype=torch.float64, device=x.device)
        stats = all_reduce(torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)  # biased, as batch norm normalises with
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach().float() * factor)
                self.running_var.mul_(1 - factor).add_((var.detach() * (n / (n - 1))).float() * factor)
        # (x - mean) * scale, as batch norm computes it: x * scale - mean * scale would cancel digits away
        # wherever the mean is large against the spread.
        scale = torch.rsqrt(var.float() + self.eps)
        if self.affine:
            scale = scale * self.weight
        y = (x - mean.float().view(1, c, 1, 1).to(x.dtype)) * scale.view(1, c, 1, 1).to(x.dtype)
        return y + self.bias.view(1, c, 1, 1).to(x.dtype) if self.affine else y


def convert_batch_norms(model: nn.Module) -> int:
    """Replace every plain ``BatchNorm2d`` of ``model`` by a :class:`DistributedBatchNorm2d`, in place (the
    state-dict keys stay, so the checkpoint loads into the plain network); returns how many."""
    norms = [m for m in model.modules() if type(m) is nn.BatchNorm2d]
    for m in norms:
        m.__class__ = DistributedBatchNorm2d  # same fields and state; only forward differs
    return len(norms)


def weights_digest(model: nn.Module) -> str:
    """A digest of every parameter and buffer, to compare ranks."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_in_sync(model: nn.Module, context: DistributedContext) -> str:
    """The weights' digest, after checking that every rank holds the same weights (raises if not)."""
    digest = weights_digest(model)
    if context.enabled:
        digests: list[str | None] = [None] * context.world_size
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise DistributedError(f"the ranks hold different weights ({digests}); they no longer train one network")
    return digest


def reduce_stats(stats: EpochStats, context: DistributedContext) -> EpochStats:
    """The epoch's training loss and accuracy over every rank's share (this rank's alone without a group)."""
    if not context.enabled:
        return stats
    totals = torch.tensor([stats.seen, stats.correct, stats.loss_sum], dtype=torch.float64)
    dist.all_reduce(totals)
    return EpochStats(int(totals[0]), int(totals[1]), float(totals[2]))


DDP_RECIPES = ("standard", "stochastic-depth")  # one forward pass per step: the DDP wrapper


def data_parallel(model: nn.Module, recipe: str, context: DistributedContext,
                  device: torch.device) -> tuple[nn.Module, Callable[[], None] | None]:
    """The module a training step calls, and what to run between its backward pass and the optimiser step.

    Recipes with one forward pass per step run through ``DistributedDataParallel`` (bucketed all-reduce,
    overlapped with the backward pass). The gated-depth recipes run the network twice in a distillation step,
    which the DDP wrapper cannot synchronise, so their gradients are averaged by one all-reduce after the backward
    pass: the same arithmetic, without the overlap. One process: the model itself, nothing to synchronise.
    """
    if not context.enabled:
        return model, None
    if recipe in DDP_RECIPES:
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=recipe != "standard"), None  # dropped blocks have no gradient in that step
    return model, lambda: average_gradients(model, context)


def average_gradients(model: nn.Module, context: DistributedContext) -> None:
    """Average every gradient over the ranks in one all-reduce. A parameter without a gradient (a block every rank
    skipped in this step, by the shared draw) stays without one, as in one process."""
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= context.world_size
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(averaged)


def refuse_under_torchrun(what: str) -> None:
    """For training that does not take part in a process group: one process only, said clearly."""
    if launched_by_torchrun():
        raise UsageError(f"{what} trains in one process; run it without torchrun or --nproc-per-node")
