"""The fitness evaluator: one task in, one result dict out. Failures are results too.   [torch]

An `Evaluator` is a small picklable callable holding only settings; the data are loaded the
first time a process calls it and stay resident on that process's device, so a long-lived
worker pays for loading once. A candidate that runs out of memory, produces a NaN/inf loss,
exceeds its time limit or raises anything at all becomes `{"status": "failed", "error": ...}`
and the run goes on.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Generator
from dataclasses import dataclass, replace

from evo_nas.build import Skeleton, build
from evo_nas.evaluate import data as datasets
from evo_nas.evaluate.count import count_macs, count_params
from evo_nas.genome_io import parse_genome


@dataclass(frozen=True)
class Task:
    id: int
    genome: dict
    seed: int
    epochs: float
    rung: int = 0


@dataclass(frozen=True)
class DataSettings:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_fraction: float = 0.1
    train_limit: int | None = None
    val_limit: int | None = None
    split_seed: int = 0  # the run's seed: one fixed split per run


@dataclass(frozen=True)
class EvalSettings:
    data: DataSettings
    skeleton: Skeleton
    train: object  # evaluate.train.TrainConfig (imported lazily: heavy)
    device: str = "cpu"
    max_macs: float | None = None  # over a limit: recorded as infeasible, not trained
    max_params: float | None = None
    cpu_threads: int = 1  # fixed per run: CPU float results depend on the thread count


def eval_seed(run_seed: int, individual_id: int) -> int:
    """Each evaluation's own seed: stable across backends, workers and resumes."""
    digest = hashlib.sha256(f"{run_seed}:{individual_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Evaluator:
    def __init__(self, settings: EvalSettings):
        self.settings = settings

    def __call__(self, task: Task) -> dict:
        return drive(self.begin(task))

    def begin(self, task: Task, stream=None) -> Generator[None, None, dict]:
        """The evaluation as a generator: one item per training step, the result dict as its
        return value. A worker interleaving several runs each next() with `stream` current."""
        start = time.perf_counter()
        try:
            result = yield from self._evaluate(task, stream)
        except Exception as err:  # noqa: BLE001 - any failure of a candidate is data
            result = {"status": "failed", "error": describe_error(err)}
            _release_memory(self.settings.device)
        return {"device": self.settings.device, **result, "wall_time": round(time.perf_counter() - start, 3)}

    def _evaluate(self, task: Task, stream) -> Generator[None, None, dict]:
        import torch

        from evo_nas.evaluate.train import Training, TrainingFailure

        s = self.settings
        if s.device == "cpu":
            torch.set_num_threads(s.cpu_threads)
        genome = parse_genome(task.genome, f"evaluation {task.id}")
        torch.manual_seed(task.seed)  # weight initialisation
        model = build(genome, s.skeleton)
        counts = {"params": count_params(model), "macs": count_macs(model, s.skeleton.input_shape)}
        over = [name for name, limit in (("macs", s.max_macs), ("params", s.max_params))
                if limit is not None and counts[name] > limit]
        if over:
            return {"status": "infeasible", **counts, "error": f"{over[0]} over the limit"}
        train_data, val_data = resident_data(s.data, s.device)
        config = replace(s.train, epochs=task.epochs)
        try:
            training = Training(model.to(s.device), train_data, val_data, config, s.device, task.seed,
                                genome.hparams, stream)
            yield from training.steps()
            r = training.result()
        except TrainingFailure as failure:
            return {"status": "failed", **counts, "error": failure.reason}
        return {"status": "ok", **counts, "accuracy": r.val_accuracy, "train_loss": r.train_loss,
                "epochs": r.epochs, "path": r.path, "fallback": r.fallback_reason, "precision": r.precision,
                "images_per_s": round(r.images_per_s, 1)}


def drive(steps: Generator[None, None, dict]) -> dict:
    """Run an evaluation generator to its end; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def describe_error(err: BaseException) -> str:
    """One line: the exception, and where in the code it happened."""
    if type(err).__name__ == "OutOfMemoryError" or "out of memory" in str(err).lower():
        return "out of memory"
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    message = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {message}{at}"


def _release_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


_RESIDENT: dict = {}  # per process: (data settings, device) -> (train, validation) on the device


def resident_data(settings: DataSettings, device: str):
    """The train and validation splits, loaded once per process and kept on the device."""
    key = (settings, device)
    if key not in _RESIDENT:
        import torch

        from evo_nas.evaluate.device_data import DeviceData

        _RESIDENT.clear()  # one data set per worker at a time
        dataset = datasets.load_dataset(settings.dataset, settings.data_dir)
        train_idx, val_idx = datasets.split(len(dataset.y_train), settings.val_fraction, settings.split_seed)
        if settings.train_limit:
            train_idx = datasets.subset(train_idx, settings.train_limit, settings.split_seed)
        if settings.val_limit:
            val_idx = datasets.subset(val_idx, settings.val_limit, settings.split_seed + 1)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        channels_last = device.startswith("cuda")
        _RESIDENT[key] = (DeviceData(dataset, train_idx, device, dtype, channels_last=channels_last),
                          DeviceData(dataset, val_idx, device, dtype, channels_last=channels_last))
    return _RESIDENT[key]

