"""``edgeskip demo``: the design-time pipeline end to end on the embedded default
(Korol et al., Fig. 3, Steps 1-4) with the shipped ResNet-20 Fashion-MNIST checkpoints.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgeskip.design import workflow
from edgeskip.progress import console
from edgeskip.training.trainer import TrainConfig, train

SHIPPED = {"stochastic-depth": "resnet20-fashion-mnist-sd.pt", "standard": "resnet20-fashion-mnist-standard.pt"}


def shipped_checkpoint(recipe: str) -> Path:
    path = Path(str(resources.files("edgeskip") / "assets" / SHIPPED[recipe]))
    if not path.is_file():
        raise FileNotFoundError(f"shipped checkpoint {path} is missing; reinstall edgeskip or use --train")
    return path


def run_demo(out: str | Path, *, retrain: bool = False, epochs: int = 20, limit: int | None = 2000,
             device: str = "cpu", data_dir: str | Path | None = None) -> dict[str, Path]:
    out = Path(out)
    checkpoints: dict[str, Path] = {}
    for recipe in SHIPPED:
        if retrain:
            path = out / recipe / "model.pt"
            console.rule(f"train resnet20 ({recipe}, {epochs} epochs)")
            train(TrainConfig(model="resnet20", dataset="fashion-mnist", recipe=recipe, epochs=epochs, device=device,
                              data_dir=str(data_dir) if data_dir else None), path)
            checkpoints[recipe] = path
        else:
            checkpoints[recipe] = shipped_checkpoint(recipe)
    options = workflow.DataOptions(data_dir=data_dir, limit=limit, device=device)
    sd = checkpoints["stochastic-depth"]

    console.rule("sensitivity analysis (validation split)")
    ranking = workflow.sensitivity(sd, out / "sensitivity.json", options)
    console.print(f"least important first: {ranking['order']}")

    console.rule("Pareto front")
    result = workflow.pareto(sd, out / "sensitivity.json", out / "pareto.json", options)
    for c in result.front.configs:
        console.print(f"  skip {c.n_skipped}: val {c.val_accuracy:.4f} test {c.test_accuracy:.4f} "
                      f"{c.macs / 1e6:.1f} MMAC {c.latency_ms:.2f} ms  mask {c.mask}")
    if result.hypervolume_ratio is not None:
        console.print(f"hypervolume(sensitivity front) / hypervolume(true front) = {result.hypervolume_ratio:.4f}")

    console.rule("Figure 1: stochastic depth vs standard training")
    doc = workflow.figure1({k: v for k, v in checkpoints.items()}, out / "figure1.json", options)
    for m in doc["models"]:
        console.print(f"  {m['label']}: mean accuracy loss over N = {m['mean_accuracy_loss']:.4f}")
    console.print(f"results in {out}/: sensitivity.json, pareto.json, pareto_front.png, "
                  "accuracy_vs_skipped.png, figure1.json, figure1.png")
    return {"sensitivity": out / "sensitivity.json", "pareto": out / "pareto.json", "figure1": out / "figure1.json"}
