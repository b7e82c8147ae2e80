"""The design-time evaluations on a Ray cluster: the configuration sweeps of Steps 2-4 of the paper's flow
(Korol et al., Fig. 3: sensitivity, the Pareto front, Figure 1) split over many machines.

``--ray local`` starts a Ray instance on this machine; ``--ray ADDRESS`` (``ray://head:10001`` or ``head:6379``)
joins a running cluster. Each Ray worker is an actor that holds the checkpoint's :class:`ConfigEvaluator`, built
from the checkpoint's bytes (sent through Ray's object store) and the dataset *on that worker* (the same name,
so a cluster's nodes need the dataset at the same path). :meth:`RayEvaluatorPool.evaluate` cuts the sorted masks
into contiguous chunks, so each task shares prefixes within itself through the design-time engine, and gives
the chunks to whichever actor is free. The accuracies are the ones a local run computes: every mask is evaluated
by the same code on the same images, and only the grouping changes. Latencies are still measured on the machine
that runs the command (they describe that machine).
"""

from __future__ import annotations

import itertools
import os
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeskip_runtime.errors import EdgeskipError, UsageError

from edgeskip.progress import progress_bar

if TYPE_CHECKING:
    from edgeskip.accuracy import Evaluation
    from edgeskip.design.workflow import DataOptions

CHUNKS_PER_WORKER = 4  # small enough to balance the workers, large enough to share prefixes within a task


class RayError(EdgeskipError, RuntimeError):
    """Ray is missing, the cluster cannot be reached, or a worker failed."""


def _ray():
    try:
        import ray
    except ImportError as e:
        raise RayError("--ray needs the ray package: pip install 'ray>=2.40' (it is in edgeskip's [ray] extra)") from e
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Ray retries an unreachable head for minutes; a TCP connect says at once whether anything listens."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray wants local or a cluster address HOST:PORT (or ray://HOST:PORT), got {address!r}",
                         setting="ray_address")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayError(f"cannot start or join the Ray cluster at {address!r}: nothing answers there ({e})") from e


class _EvaluatorActor:
    """One Ray worker: the checkpoint's evaluator, built once, answering chunks of masks."""

    def __init__(self, checkpoint: bytes, options: dict[str, Any]) -> None:
        import torch

        from edgeskip.design.workflow import DataOptions, open_session

        torch.set_num_threads(1)  # one CPU per actor
        with tempfile.TemporaryDirectory(prefix="edgeskip-ray-") as folder:  # read once, into the evaluator
            path = Path(folder) / "checkpoint.pt"
            path.write_bytes(checkpoint)
            self.evaluator = open_session(path, DataOptions(**options)).evaluator

    def evaluate(self, masks: list[tuple[int, ...]], split: str) -> dict[tuple[int, ...], Evaluation]:
        self.evaluator.prefetch(masks, split, progress=False)
        return {m: self.evaluator.evaluation(m, split) for m in masks}


class RayEvaluatorPool:
    """Actors holding the checkpoint's evaluator on a Ray cluster (``address``: ``local`` or a cluster's)."""

    def __init__(self, address: str, checkpoint_path: str | Path, options: DataOptions,
                 workers: int | None = None) -> None:
        ray = _ray()
        if workers is not None and workers < 1:
            raise UsageError(f"--ray-workers must be at least 1, got {workers}", setting="ray_workers")
        local = address == "local"
        if not local:
            _check_reachable(address)
        try:
            if not ray.is_initialized():
                ray.init(address=None if local else address, num_cpus=(workers or os.cpu_count()) if local else None,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayError(f"cannot start or join the Ray cluster at {address!r}: {e}") from e
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        blob = ray.put(Path(checkpoint_path).read_bytes())
        settings = {**asdict(options), "ray_address": None, "ray_workers": None, "device": "cpu"}
        actor = ray.remote(num_cpus=1)(_EvaluatorActor)
        self.actors = [actor.remote(blob, settings) for _ in range(self.workers)]

    def evaluate(self, masks: Sequence[tuple[int, ...]], split: str, *, label: str = "evaluating",
                 progress: bool = True) -> dict[tuple[int, ...], Evaluation]:
        """Evaluate ``masks`` on ``split`` over the actors, in contiguous chunks of the sorted masks."""
        ray = _ray()
        ordered = sorted(masks)
        n_chunks = min(len(ordered), self.workers * CHUNKS_PER_WORKER)
        bounds = [round(i * len(ordered) / n_chunks) for i in range(n_chunks + 1)]
        chunks = [ordered[a:b] for a, b in itertools.pairwise(bounds) if b > a]
        results: dict[tuple[int, ...], Evaluation] = {}
        free, running = list(self.actors), {}
        with progress_bar(progress) as bar:
            task = bar.add_task(f"{label}: {len(ordered)} configurations on {split}, {self.workers} Ray workers",
                                total=len(ordered), info="")
            while chunks or running:
                while chunks and free:
                    actor, chunk = free.pop(), chunks.pop(0)
                    running[actor.evaluate.remote(chunk, split)] = (actor, len(chunk))
                done, _ = ray.wait(list(running), num_returns=1)
                actor, size = running.pop(done[0])
                try:
                    results.update(ray.get(done[0]))
                except Exception as e:
                    raise RayError(f"a Ray worker failed while evaluating configurations: {e}") from e
                free.append(actor)
                bar.advance(task, size)
        return results

    def close(self) -> None:
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
