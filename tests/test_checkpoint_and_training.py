"""Training writes atomic, self-describing, resumable checkpoints; corrupt ones are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeskip.training.checkpoint import CheckpointError, load_checkpoint
from edgeskip.training.trainer import TrainConfig, metrics_log_path, train


def test_checkpoint_describes_itself(synthetic_checkpoint: Path) -> None:
    ck = load_checkpoint(synthetic_checkpoint)
    assert ck.model == "resnet20" and ck.dataset == "synthetic" and ck.recipe == "stochastic-depth"
    assert ck.model_args == {"in_channels": 1, "num_classes": 10}
    assert ck.input_shape == [1, 32, 32] and len(ck.normalization.mean) == 1
    assert not any("block.block" in k or ".block." in k for k in ck.state_dict)  # plain keys, no wrappers
    model = ck.build_model()
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    lines = metrics_log_path(synthetic_checkpoint).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_training_learns_the_synthetic_task(synthetic_checkpoint: Path) -> None:
    assert load_checkpoint(synthetic_checkpoint).metrics[-1]["val_accuracy"] > 0.4  # chance is 0.1


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    cfg = TrainConfig(model="resnet20", dataset="synthetic", epochs=2, limit=128, batch_size=32, lr=0.05)
    straight = train(cfg, tmp_path / "a.pt", progress=False)

    class Crash(Exception):
        pass

    def crash_after_first(epoch: int) -> None:
        if epoch == 1:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, tmp_path / "b.pt", progress=False, on_epoch_end=crash_after_first)
    assert load_checkpoint(tmp_path / "b.pt").epoch == 1
    resumed = train(cfg, tmp_path / "b.pt", resume=True, progress=False)
    assert resumed.epoch == 2 and len(resumed.metrics) == 2
    # Same data order, drops, optimiser and schedule state: bit-identical weights.
    for key, value in straight.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[key], value, rtol=0, atol=0, msg=key)


def test_resume_refuses_a_different_run(tmp_path: Path) -> None:
    train(TrainConfig(dataset="synthetic", epochs=1, limit=64, batch_size=32), tmp_path / "m.pt", progress=False)
    with pytest.raises(ValueError, match=r"cannot resume.*seed"):
        train(TrainConfig(dataset="synthetic", epochs=2, limit=64, batch_size=32, seed=5), tmp_path / "m.pt",
              resume=True, progress=False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable checkpoint"),
        (b"garbage" * 100, "not a readable checkpoint"),
    ],
)
def test_corrupt_checkpoint(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_and_foreign_checkpoints(tmp_path: Path, synthetic_checkpoint: Path) -> None:
    raw = synthetic_checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"not an edgeskip\.checkpoint/1"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_with_code_is_not_executed(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    torch.save({"format": "edgeskip.checkpoint/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")


def test_bad_training_options() -> None:
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(KeyError, match="unknown recipe"):
        TrainConfig(recipe="dropout").validate()


def test_warmup_scales_the_learning_rate_linearly(tmp_path: Path) -> None:
    def lrs(warmup: float) -> list[float]:
        ck = train(TrainConfig(model="resnet20", dataset="synthetic", epochs=2, limit=64, batch_size=32,
                               warmup_epochs=warmup), tmp_path / f"w{warmup}.pt", progress=False)
        return [m["lr"] for m in ck.metrics]

    plain, warm = lrs(0.0), lrs(2.0)
    assert warm[0] == pytest.approx(0.5 * plain[0])  # the last step of epoch 1 is halfway through the warm-up
    assert warm[1] == pytest.approx(plain[1])  # warm-up over: the schedule alone


def test_bf16_mixed_precision_learns_and_keeps_float32_weights(tmp_path: Path, synthetic_checkpoint: Path) -> None:
    # The fixture's run, in bf16.
    cfg = dict(model="resnet20", dataset="synthetic", epochs=3, limit=512, batch_size=32, lr=0.05)
    ck = train(TrainConfig(**cfg, precision="bf16"), tmp_path / "bf16.pt", progress=False)
    assert all(v.dtype in (torch.float32, torch.int64) for v in ck.state_dict.values())
    assert ck.metrics[-1]["val_accuracy"] > 0.4  # chance is 0.1; the fp32 run's bar
    fp32 = load_checkpoint(synthetic_checkpoint)
    assert fp32.train_config["precision"] == "fp32" and ck.train_config["precision"] == "bf16"
    # Autocast really ran: the same seed and data give different weights than float32 does.
    assert any(not torch.equal(v, fp32.state_dict[k]) for k, v in ck.state_dict.items() if v.is_floating_point())
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16").validate()
