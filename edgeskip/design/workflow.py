"""The design-time steps as library calls (Korol et al., Fig. 3, Steps 1-4); the CLI wraps these.

Each step starts from a checkpoint alone: the checkpoint names its model, dataset,
normalisation and the validation split it held out, so the validation split used here for
selection is exactly the data the model never trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.errors import FileFormatError, UsageError

from edgeskip.data import DatasetSplits, load_dataset
from edgeskip.design import figure1 as fig1
from edgeskip.design.config_eval import ConfigEvaluator
from edgeskip.design.pareto_search import ParetoResult, build_pareto
from edgeskip.design.plots import plot_accuracy_vs_skipped, plot_figure1, plot_pareto
from edgeskip.design.prefix_engine import DEFAULT_MEMORY_BUDGET
from edgeskip.design.sensitivity import SCHEMA as SENSITIVITY_SCHEMA
from edgeskip.design.sensitivity import run_sensitivity
from edgeskip.models.cost import mac_profile
from edgeskip.training.checkpoint import Checkpoint, load_checkpoint


@dataclass
class DataOptions:
    data_dir: str | Path | None = None
    limit: int | None = None
    device: str = "cpu"
    memory_mb: int = DEFAULT_MEMORY_BUDGET >> 20  # activations the design-time engine may keep
    selection_precision: str = "fp32"  # of the validation (selection) evaluations
    report_precision: str = "fp32"  # of the test evaluations: float32 but for Figure 1's --precision
    ray_address: str | None = None  # "local" or a Ray cluster's address: evaluate the configurations there
    ray_workers: int | None = None  # Ray actors (default: the cluster's CPUs)


@dataclass
class Session:
    checkpoint: Checkpoint
    data: DatasetSplits
    evaluator: ConfigEvaluator


def open_session(checkpoint_path: str | Path, options: DataOptions) -> Session:
    """Load a checkpoint and the same train/validation split it was trained with."""
    ck = load_checkpoint(checkpoint_path)
    cfg = ck.train_config
    data = load_dataset(ck.dataset, options.data_dir, val_fraction=cfg.get("val_fraction", 0.1),
                        seed=cfg.get("seed", 0), limit=options.limit)
    if list(data.image_shape) != list(ck.input_shape):
        raise UsageError(f"dataset {ck.dataset} gives images of shape {data.image_shape}, "
                         f"the checkpoint expects {tuple(ck.input_shape)}")
    data.normalization = ck.normalization  # evaluate exactly as trained
    evaluator = ConfigEvaluator(ck.build_model(), data, device=options.device,
                                memory_budget_bytes=options.memory_mb << 20,
                                selection_precision=options.selection_precision,
                                report_precision=options.report_precision)
    if options.ray_address:
        from edgeskip.design.ray_pool import RayEvaluatorPool

        evaluator.remote = RayEvaluatorPool(options.ray_address, checkpoint_path, options, options.ray_workers)
    return Session(ck, data, evaluator)


def evaluate_checkpoint(checkpoint_path: str | Path, options: DataOptions,
                        mask: list[int] | None = None) -> dict[str, Any]:
    """Validation and test accuracy of a checkpoint at full depth (or under ``mask``)."""
    s = open_session(checkpoint_path, options)
    cfg = mask if mask is not None else [1] * s.evaluator.num_blocks
    return {"model": s.checkpoint.model, "dataset": s.checkpoint.dataset, "recipe": s.checkpoint.recipe,
            "epoch": s.checkpoint.epoch, "mask": cfg, "val_accuracy": s.evaluator.accuracy(cfg, "val"),
            "test_accuracy": s.evaluator.accuracy(cfg, "test"), "n_val": len(s.data.val), "n_test": len(s.data.test)}


def sensitivity(checkpoint_path: str | Path, out: str | Path, options: DataOptions, *, ranker: str = "sensitivity",
                seed: int = 0, progress: bool = True) -> dict[str, Any]:
    s = open_session(checkpoint_path, options)
    doc = {"model": s.checkpoint.model, "dataset": s.checkpoint.dataset, "checkpoint": str(checkpoint_path),
           **run_sensitivity(s.evaluator, ranker=ranker, seed=seed, progress=progress),
           "precision": s.evaluator.selection_precision}
    write_json(out, doc)
    return doc


def load_sensitivity(path: str | Path, num_blocks: int, model: str) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileFormatError(f"sensitivity file {path} does not exist; run `edgeskip sensitivity` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("schema") != SENSITIVITY_SCHEMA:
        raise FileFormatError(f"{path} is not an {SENSITIVITY_SCHEMA} file")
    if doc.get("skippable_blocks") != num_blocks or sorted(doc.get("order", [])) != list(range(num_blocks)):
        raise FileFormatError(f"{path} ranks {doc.get('skippable_blocks')} blocks, the model has {num_blocks}")
    if doc.get("model") != model:
        raise FileFormatError(f"{path} was made for model {doc.get('model')!r}, the checkpoint is {model!r}")
    return doc


def pareto(checkpoint_path: str | Path, sensitivity_path: str | Path, out: str | Path, options: DataOptions, *,
           exhaustive: bool | None = None, repeats: int = 30, plots: bool = True,
           progress: bool = True) -> ParetoResult:
    """Write ``pareto.json`` and, beside it, ``accuracy_vs_skipped.png`` and ``pareto_front.png``."""
    s = open_session(checkpoint_path, options)
    ranking = load_sensitivity(sensitivity_path, s.evaluator.num_blocks, s.checkpoint.model)
    costs = mac_profile(s.checkpoint.build_model(), s.checkpoint.input_shape)
    result = build_pareto(s.evaluator, ranking["order"], costs, model=s.checkpoint.model,
                          dataset=s.checkpoint.dataset, input_shape=s.checkpoint.input_shape,
                          ranker=ranking.get("ranker", "sensitivity"), exhaustive=exhaustive, repeats=repeats,
                          progress=progress)
    result.front.meta["checkpoint"] = str(checkpoint_path)
    result.front.meta["selection_precision"] = s.evaluator.selection_precision
    result.front.save(out)
    if plots:
        folder = Path(out).parent
        plot_accuracy_vs_skipped(result.candidates, folder / "accuracy_vs_skipped.png",
                                 f"{s.checkpoint.model} on {s.checkpoint.dataset}")
        plot_pareto(result.candidates, result.front.configs, folder / "pareto_front.png", result.exhaustive,
                    result.exhaustive_front, f"{s.checkpoint.model} on {s.checkpoint.dataset}")
    return result


def figure1(checkpoints: dict[str, str | Path], out: str | Path, options: DataOptions, *, draws: int = 100,
            seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Figure 1 for several checkpoints (label -> path); writes ``out`` (JSON) and the PNG beside it."""
    if draws < 1:
        raise UsageError(f"draws must be positive, got {draws}", setting="draws")
    models = []
    n_samples = None
    for label, path in checkpoints.items():
        s = open_session(path, options)
        curve = fig1.accuracy_curve(s.evaluator, draws=draws, seed=seed, label=label, progress=progress)
        if s.evaluator.remote is not None:  # its actors hold the cluster's CPUs: free them for the next model
            s.evaluator.remote.close()
        n_samples = len(s.data.test)
        models.append({"label": label, "recipe": s.checkpoint.recipe, "model": s.checkpoint.model,
                       "checkpoint": str(path), "mean_accuracy_loss": fig1.mean_accuracy_loss(curve),
                       "curve": curve})
    doc = {"schema": fig1.SCHEMA, "split": "test", "n_samples": n_samples, "draws": draws, "seed": seed,
           "precision": s.evaluator.report_precision, "models": models}
    write_json(out, doc)
    plot_figure1(doc, Path(out).with_suffix(".png"))
    return doc
