"""The fitness evaluator: one task in, one Result out. Failures are results too.   [torch]

An `Evaluator` is a small picklable callable holding only settings; the data are loaded the
first time a process calls it and stay resident on that process's device, so a long-lived
worker pays for loading once. A candidate that runs out of memory, produces a NaN/inf loss,
exceeds its time limit or raises anything at all becomes a FAILED result and the run goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Generator
from dataclasses import dataclass, replace

import torch

from evo_nas.build import build
from evo_nas.config import DataConfig, RunConfig, Skeleton, TrainConfig
from evo_nas.evaluate import data as datasets
from evo_nas.evaluate.count import count_macs, count_params
from evo_nas.evaluate.device_data import DeviceData, on_device
from evo_nas.evaluate.engine import TrainingFailed, drive, proxy_training
from evo_nas.genome import Genome
from evo_nas.records import Result, Status
from evo_nas.rng import derive_seed


@dataclass(frozen=True)
class Task:
    id: int
    genome: Genome
    seed: int
    epochs: float
    rung: int = 0


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation depends on, taken from a RunConfig's parts."""

    data: DataConfig
    split_seed: int  # the run's seed: one fixed split per run
    skeleton: Skeleton
    train: TrainConfig
    device: str = "cpu"
    cpu_threads: int = 1  # fixed per run: CPU float results depend on the thread count
    max_macs: float | None = None  # over a limit: recorded as infeasible, not trained
    max_params: float | None = None

    @classmethod
    def of(cls, cfg: RunConfig) -> EvalSettings:
        return cls(cfg.data, cfg.seed, cfg.skeleton, cfg.train, cfg.backend.device, cfg.backend.cpu_threads,
                   cfg.search.max_macs, cfg.search.max_params)


def eval_seed(run_seed: int, individual_id: int) -> int:
    """Each evaluation's own seed: stable across backends, workers and resumes."""
    return derive_seed(run_seed, individual_id)


class Evaluator:
    def __init__(self, settings: EvalSettings):
        self.settings = settings

    def on(self, device: str) -> Evaluator:
        """The same evaluator for another device (a worker's cuda:k)."""
        return self if device == self.settings.device else Evaluator(replace(self.settings, device=device))

    def __call__(self, task: Task) -> Result:
        return drive(self.begin(task))

    def begin(self, task: Task, stream=None) -> Generator[None, None, Result]:
        """The evaluation as a generator: one item per training step, the Result as its
        return value. A worker interleaving several runs each next() with `stream` current."""
        start = time.perf_counter()
        try:
            result = yield from self._evaluate(task, stream)
        except Exception as err:  # noqa: BLE001 - any failure of a candidate is data
            result = Result(Status.FAILED, error=describe_error(err))
            if self.settings.device.startswith("cuda"):
                torch.cuda.empty_cache()
        return replace(result, device=self.settings.device, wall_time=round(time.perf_counter() - start, 3))

    def _evaluate(self, task: Task, stream) -> Generator[None, None, Result]:
        s = self.settings
        if s.device == "cpu":
            torch.set_num_threads(s.cpu_threads)
        torch.manual_seed(task.seed)  # weight initialisation
        model = build(task.genome, s.skeleton)
        counts = {"params": count_params(model), "macs": count_macs(model, s.skeleton.input_shape)}
        over = [name for name, limit in (("macs", s.max_macs), ("params", s.max_params))
                if limit is not None and counts[name] > limit]
        if over:
            return Result(Status.INFEASIBLE, **counts, error=f"{over[0]} over the limit")
        train_data, val_data = resident_data(s.data, s.split_seed, s.device)
        config = replace(s.train, epochs=task.epochs)
        try:
            r = yield from proxy_training(model.to(s.device), train_data, val_data, config, s.device, task.seed,
                                          task.genome.hparams, stream)
        except TrainingFailed as failure:
            return Result(Status.FAILED, **counts, error=failure.reason)
        return Result(Status.OK, **counts, accuracy=r.val_accuracy, train_loss=r.train_loss, epochs=r.epochs,
                      path=r.path, fallback=r.fallback_reason, precision=r.precision,
                      images_per_s=round(r.images_per_s, 1))


def describe_error(err: BaseException) -> str:
    """One line: the exception, and where in the code it happened."""
    if type(err).__name__ == "OutOfMemoryError" or "out of memory" in str(err).lower():
        return "out of memory"
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    message = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {message}{at}"


_RESIDENT: dict = {}  # per process: (data settings, seed, device) -> (train, validation) on the device


def resident_data(cfg: DataConfig, seed: int, device: str) -> tuple[DeviceData, DeviceData]:
    """The train and validation splits, loaded once per process and kept on the device."""
    key = (cfg, seed, device)
    if key not in _RESIDENT:
        _RESIDENT.clear()  # one data set per worker at a time
        dataset = datasets.load_dataset(cfg.dataset, cfg.data_dir)
        train_idx, val_idx = datasets.proxy_split(len(dataset.y_train), cfg, seed)
        _RESIDENT[key] = (on_device(dataset, train_idx, device), on_device(dataset, val_idx, device))
    return _RESIDENT[key]
