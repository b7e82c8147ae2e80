"""Data-parallel training under torchrun: 2 CPU processes over loopback (gloo) train the network that one
process trains with the same global batch, every rank holds the same weights, and --resume works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeskip.training.checkpoint import load_checkpoint
from edgeskip.training.distributed import weights_digest
from edgeskip.training.trainer import TrainConfig, train

# 29 training images, one global batch of 29 per epoch (each rank: 15 and 14 images, an uneven share), so the
# ranks compare their weights after each of the two steps. In the
# default memory format: oneDNN's channels-last kernels round differently per batch size (measured here: weight
# gradients of ResNet-20 up to 4 % of their magnitude from a float64 reference, the default layout 5e-6). On
# Fashion-MNIST, not the synthetic set: on its coarse patterns a fresh ResNet-20's float32 gradients are 4 % from
# float64 in one process already. Early training amplifies rounding step by step (lr 0.05, batch 15: 6e-4 after
# 3 steps, 5e-2 after 6), so lr 0.01 (with 2 steps per epoch, 4 steps left one and two processes at most 2e-4
# apart in a weight of about 0.3, and 3.6e-4 relative in a running variance).
SETTINGS = {"model": "resnet20", "dataset": "fashion-mnist", "epochs": 2, "limit": 29, "batch_size": 29,
            "lr": 0.01, "seed": 3, "channels_last": False}
TOLERANCE = {"rtol": 1e-3, "atol": 5e-4}


def torchrun_train(out: Path, recipe: str, *extra: str, ok: bool = True) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "edgeskip", "train", "--nproc-per-node", "2", "--threads", "1", "--recipe", recipe,
            "--no-channels-last", "--out", str(out), *extra]
    for key in ("model", "dataset", "limit", "batch_size", "lr", "seed"):
        args += [f"--{key.replace('_', '-')}", str(SETTINGS[key])]
    if "--epochs" not in extra:
        args += ["--epochs", str(SETTINGS["epochs"])]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if ok and done.returncode != 0:
        raise AssertionError(f"torchrun training failed:\n{done.stdout}\n{done.stderr}")
    return done


# standard and stochastic-depth run through the DDP wrapper; gated-depth (a distillation step runs the network
# twice: the first step here is one) averages its gradients with one all-reduce after the backward pass.
@pytest.mark.parametrize("recipe", ["standard", "stochastic-depth", "gated-depth"])
def test_two_processes_train_what_one_process_trains(recipe: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    single = train(TrainConfig(recipe=recipe, **SETTINGS), tmp_path / "single.pt", progress=False)
    torchrun_train(tmp_path / "ddp.pt", recipe)
    ddp = load_checkpoint(tmp_path / "ddp.pt")
    for key, value in single.state_dict.items():
        torch.testing.assert_close(ddp.state_dict[key], value, **TOLERANCE, msg=lambda m, k=key: f"{k}: {m}")
    last = ddp.metrics[-1]
    # After each step (one per epoch) every rank checked its weights' digest against the others'; rank 0 wrote
    # the weights they agreed on.
    assert all(m["world_size"] == 2 and len(m["weights_sha256"]) == 64 for m in ddp.metrics)
    assert last["weights_sha256"] == weights_digest(ddp.build_model())
    # The ranks shared the data: together they saw each training image once per epoch, not once each.
    assert last["train_images"] == SETTINGS["limit"] and single.metrics[-1]["train_images"] == SETTINGS["limit"]
    assert abs(last["val_accuracy"] - single.metrics[-1]["val_accuracy"]) <= 1 / 6  # at most one of 6 images flips


class Interrupted(Exception):
    pass


def _stop_after_first_epoch(epoch: int) -> None:
    raise Interrupted


def test_resume_under_ddp_continues_an_interrupted_run(tmp_path: Path) -> None:
    """A run stopped after its first epoch, resumed by 2 processes, ends where an uninterrupted run ends."""
    torch.set_num_threads(1)
    with pytest.raises(Interrupted):
        train(TrainConfig(recipe="stochastic-depth", **SETTINGS), tmp_path / "resumed.pt", progress=False,
              on_epoch_end=_stop_after_first_epoch)
    assert load_checkpoint(tmp_path / "resumed.pt").epoch == 1
    torchrun_train(tmp_path / "resumed.pt", "stochastic-depth", "--resume")
    torchrun_train(tmp_path / "straight.pt", "stochastic-depth")
    straight, resumed = load_checkpoint(tmp_path / "straight.pt"), load_checkpoint(tmp_path / "resumed.pt")
    assert resumed.epoch == 2 and [m["epoch"] for m in resumed.metrics] == [1, 2]
    for key, value in straight.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, **TOLERANCE)


def test_skipnet_is_refused_under_torchrun_before_training(tmp_path: Path) -> None:
    standard = train(TrainConfig(recipe="standard", **{**SETTINGS, "epochs": 1}), tmp_path / "std.pt", progress=False)
    assert standard.epoch == 1
    done = torchrun_train(tmp_path / "skipnet.pt", "skipnet", "--from", str(tmp_path / "std.pt"), ok=False)
    assert done.returncode != 0 and "SkipNet (its reinforcement-learning stage samples per image) trains in one " \
        "process" in done.stderr
    assert not (tmp_path / "skipnet.pt").exists()
