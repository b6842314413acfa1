"""Runs: build the parts from a config, drive an algorithm, keep the run directory current.

`start(config)` creates `runs/<name>/` and searches; `resume(path)` continues one. Both end
up in `drive`, which hands the algorithm a `RunSearch`: the object through which it names
individuals, gets them evaluated (dedup across the whole run, replay of journal records
after a crash, successive halving, the backend's map) and checkpoints.

Resumed == uninterrupted: the algorithm's RNG state is in every snapshot, each evaluation's
training seed depends only on the run seed and the individual's id, and evaluations already
in the journal (also those that finished after the last snapshot) are replayed, not retrained.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import random
import sys
import time
import warnings
from pathlib import Path

import yaml

from evo_nas import algorithms, pareto
from evo_nas import config as configs
from evo_nas.algorithms import Individual, Settings, State
from evo_nas.errors import ConfigError, Interrupted, RunDirError, UserError
from evo_nas.genome import Genome, to_dict
from evo_nas.genome_io import load_genome, parse_genome
from evo_nas.spaces.base import SearchSpace
from evo_nas.store import RunDir, atomic_write, history_frame, write_csv

TIMING_FIELDS = ("wall_time", "images_per_s", "finished")  # differ between otherwise identical runs
MAX_INDIVIDUALS_FACTOR = 20  # stop if dedup keeps finding only known networks (space exhausted)


# -- building the parts from a config ------------------------------------------------------

def make_space(cfg: configs.RunConfig) -> SearchSpace:
    from evo_nas.spaces.cells import CellSpace
    from evo_nas.spaces.hparams import HParamSpace
    from evo_nas.spaces.layers import LayerSpace
    from evo_nas.spaces.nb201 import NB201Space

    hp = HParamSpace() if cfg.hparams else None
    ops = {"ops": cfg.ops} if cfg.ops else {}
    if cfg.space == "cells":
        return CellSpace(hparams=hp, blocks=cfg.blocks, **ops)
    if cfg.space == "layers":
        return LayerSpace(hparams=hp, min_layers=cfg.min_layers, max_layers=cfg.max_layers,
                          heights=cfg.kernel_sizes, widths=cfg.kernel_sizes, filters=cfg.filter_counts,
                          reductions=cfg.reductions)
    return NB201Space(hparams=hp, **ops)


def settings_of(cfg: configs.RunConfig) -> Settings:
    return Settings(population=cfg.population, offspring=cfg.offspring, sample=cfg.sample,
                    crossover=cfg.crossover, objectives=tuple(cfg.objectives),
                    max_macs=cfg.max_macs, max_params=cfg.max_params)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but torch sees no CUDA GPU here")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def load_seeds(cfg: configs.RunConfig, space: SearchSpace) -> list[Genome]:
    seeds = []
    for path in cfg.seed_genomes:
        genome = load_genome(path)
        space.validate(genome, str(path))
        seeds.append(genome)
    return seeds


# -- the object algorithms talk to -----------------------------------------------------------

class RunSearch:
    """Implements `algorithms.Search` on top of a run directory and a backend."""

    def __init__(self, cfg: configs.RunConfig, run: RunDir, backend, evaluator, records: list[dict],
                 snapshot: dict | None, progress=None):
        self.cfg, self.run, self.backend, self.evaluator = cfg, run, backend, evaluator
        self.space = make_space(cfg)
        self.settings = settings_of(cfg)
        self.progress = progress
        self.rng = random.Random(cfg.seed)
        self.next_id = 0
        if snapshot is not None:
            self.rng.setstate(_rng_state_from_json(snapshot["rng"]))
            self.next_id = snapshot["next_id"]
        self.records: list[dict] = []  # every record this run has: journal order, then new ones
        self.by_id: dict[int, dict] = {}  # id -> its latest record (the highest rung)
        self.results: dict[str, dict] = {}  # canonical key -> final record of its first evaluation
        self.seen: set[str] = set()
        self.replay: dict[tuple[int, int], dict] = {}  # (id, rung) -> record, ids not yet reached
        for record in records:
            if record["id"] < self.next_id:
                self._account(record)
            else:
                self.replay[(record["id"], record.get("rung", 0))] = record
        for record in sorted(self.by_id.values(), key=lambda r: r["id"]):
            if record.get("cache_of") is None:
                self.results.setdefault(record["key"], record)
        self.cache_hits = sum(1 for r in self.records if r.get("cache_of") is not None)
        self._seeds = load_seeds(cfg, self.space)

    # -- algorithms.Search ---------------------------------------------------------------
    def new(self, genome: Genome, parents: tuple[int, ...], operator: str, generation: int) -> Individual:
        ind = Individual(self.next_id, genome, self.space.key(genome), generation, tuple(parents), operator)
        self.next_id += 1
        self.seen.add(ind.key)
        replayed = self.replay.get((ind.id, 0))
        if replayed is not None and replayed["key"] != ind.key:
            raise RunDirError(f"{self.run.path}: the journal disagrees with this run at evaluation {ind.id} "
                              f"(was evonas or the config changed?); start a new run")
        return ind

    def is_novel(self, key: str) -> bool:
        return key not in self.seen

    def seeds(self) -> list[Genome]:
        return list(self._seeds)

    def used(self) -> int:
        """Evaluations that trained a network (dedup hits and infeasible ones are free)."""
        return sum(1 for r in self.records if _trained(r) and r.get("rung", 0) == 0)

    def room(self) -> int | float:
        return math.inf if self.cfg.budget is None else max(0, self.cfg.budget - self.used())

    def done(self, state: State) -> bool:
        if self.cfg.generations is not None and state.generation >= self.cfg.generations:
            return True
        if self.cfg.budget is not None and self.room() <= 0:
            return True
        return self.next_id >= MAX_INDIVIDUALS_FACTOR * max(self._planned(), 1)

    def progress_fraction(self, state: State) -> float:
        parts = []
        if self.cfg.generations is not None:
            parts.append(state.generation / max(self.cfg.generations, 1))
        if self.cfg.budget is not None:
            parts.append(self.used() / self.cfg.budget)
        return min(1.0, max(parts)) if parts else 0.0

    def evaluate(self, individuals: list[Individual]) -> None:
        fresh: dict[str, Individual] = {}
        twins: list[Individual] = []
        for ind in individuals:
            if ind.key in self.results:
                self._serve_from_cache(ind, self.results[ind.key])
            elif ind.key in fresh:
                twins.append(ind)
            else:
                fresh[ind.key] = ind
        rungs = self.cfg.sha_rungs if self.cfg.fidelity == "sha" else 1
        alive = list(fresh.values())
        for rung in range(rungs):
            self._run_rung(alive, rung, rungs)
            if rung + 1 < rungs:
                alive = _better_half(alive, self.settings.objectives)
        for ind in fresh.values():  # first evaluations of their networks: the cache from now on
            self.results.setdefault(ind.key, self.by_id[ind.id])
        for ind in twins:
            self._serve_from_cache(ind, self.results[ind.key])

    def checkpoint(self, state: State) -> None:
        snapshot = {"generation": state.generation, "next_id": self.next_id,
                    "population": [ind.id for ind in state.population],
                    "rng": _rng_state_to_json(self.rng.getstate()), **_library_rng_states()}
        self.run.save_snapshot(state.generation, snapshot)
        if self.cfg.report:
            from evo_nas import report

            report.refresh(self.run)  # report.html, front.csv, history.csv
        else:
            write_csv(history_frame(self.records), self.run.history_file)
        if self.progress is not None:
            self.progress.generation_done(self, state)

    # -- evaluation mechanics ------------------------------------------------------------
    def _run_rung(self, individuals: list[Individual], rung: int, rungs: int) -> None:
        from evo_nas.evaluate.evaluator import Task, eval_seed

        epochs = self.cfg.epochs * 2.0 ** (rung - rungs + 1)  # halving: ..., 1/4, 1/2, 1 of the budget
        todo = []
        for ind in individuals:
            replayed = self.replay.pop((ind.id, rung), None)
            if replayed is not None:
                self._finish(ind, replayed, rung, rungs, write=False)
            else:
                todo.append(ind)
        tasks = [Task(ind.id, to_dict(ind.genome), eval_seed(self.cfg.seed, ind.id), epochs, rung) for ind in todo]
        for i, result in self.backend.map(self.evaluator, tasks):
            self._finish(todo[i], {**_record(todo[i], rung), **result}, rung, rungs, write=True)

    def _finish(self, ind: Individual, record: dict, rung: int, rungs: int, write: bool) -> None:
        if write:
            record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            self.run.append(record)
        ind.result = _result(record)
        self._account(record)
        if self.progress is not None:
            self.progress.evaluation_done(self, record)

    def _serve_from_cache(self, ind: Individual, original: dict) -> None:
        """A network evaluated before: reuse its result, record that we did."""
        replayed = self.replay.pop((ind.id, 0), None)
        record = replayed or {**_record(ind, 0), **_result(original), "cache_of": original["id"],
                              "wall_time": 0.0, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if replayed is None:
            self.run.append(record)
        ind.result = _result(record)
        self.cache_hits += 1
        self._account(record)
        if self.progress is not None:
            self.progress.evaluation_done(self, record)

    def _account(self, record: dict) -> None:
        self.records.append(record)
        self.seen.add(record["key"])
        self.by_id[record["id"]] = record

    def _planned(self) -> int:
        per_gen = self.cfg.offspring or self.cfg.population
        if self.cfg.budget is not None:
            return self.cfg.budget
        return self.cfg.population + per_gen * (self.cfg.generations or 0)

    def individual(self, record: dict) -> Individual:
        """An individual rebuilt from its final record (for a restored population)."""
        genome = parse_genome(record["genome"], f"journal record {record['id']}")
        ind = Individual(record["id"], genome, record["key"], record["generation"],
                         tuple(record.get("parents", ())), record.get("operator", ""))
        ind.result = _result(record)
        return ind


def _record(ind: Individual, rung: int) -> dict:
    return {"id": ind.id, "rung": rung, "generation": ind.generation, "key": ind.key,
            "genome": to_dict(ind.genome), "parents": list(ind.parents), "operator": ind.operator}


RESULT_FIELDS = ("status", "accuracy", "train_loss", "macs", "params", "epochs", "error", "device", "path",
                 "precision", "fallback", "rung")


def _result(record: dict) -> dict:
    return {k: record[k] for k in RESULT_FIELDS if k in record}


def _trained(record: dict) -> bool:
    return record.get("cache_of") is None and record.get("status") != "infeasible"


def _better_half(individuals: list[Individual], objectives) -> list[Individual]:
    """Successive halving: the better half by Pareto rank (then crowding) goes on training."""
    ok = [ind for ind in individuals if ind.ok]
    keep = pareto.select_nsga2(algorithms.vectors(ok, objectives), math.ceil(len(individuals) / 2))
    return [ok[i] for i in sorted(keep)]


def _rng_state_to_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state_from_json(data) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


def _library_rng_states() -> dict:
    """numpy's and torch's global RNG states, for completeness: evaluations seed their own
    generators, so a run does not depend on these, but a snapshot holds every RNG state."""
    out = {}
    if "numpy" in sys.modules:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        out["numpy_rng"] = [name, keys.tolist(), pos, has_gauss, cached]
    if "torch" in sys.modules:
        import torch

        out["torch_rng"] = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
    return out


def _restore_library_rng_states(snapshot: dict) -> None:
    if "numpy_rng" in snapshot:
        import numpy as np

        name, keys, pos, has_gauss, cached = snapshot["numpy_rng"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch_rng" in snapshot:
        import numpy as np
        import torch

        raw = np.frombuffer(base64.b64decode(snapshot["torch_rng"]), dtype=np.uint8).copy()
        torch.set_rng_state(torch.from_numpy(raw))


# -- starting, resuming, driving ------------------------------------------------------------

def start(cfg: configs.RunConfig, progress=None) -> RunDir:
    device = resolve_device(cfg.device)
    cfg = configs.check(configs.resolve(cfg, device))
    if cfg.generations is None and cfg.budget is None:
        raise ConfigError("config: set generations or budget")
    space = make_space(cfg)
    seeds = load_seeds(cfg, space)  # bad seed files fail before anything is written
    name = cfg.name or time.strftime(f"{cfg.space}-{cfg.algorithm}-%Y%m%d-%H%M%S")
    cfg = dataclasses.replace(cfg, name=name)
    RunDir.refuse_existing(Path(cfg.runs_dir) / name)
    _check_data(cfg)
    reference = reference_point(cfg, space, seeds)
    backend = make_backend(cfg)  # a missing package or cluster fails before anything is written
    run = _create(cfg, name, reference, backend)
    drive(cfg, run, records=[], snapshot=None, progress=progress, backend=backend)
    return run


def _create(cfg: configs.RunConfig, name: str, reference: dict, backend) -> RunDir:
    meta = {"seed": cfg.seed, "reference_point": reference, "objectives": list(cfg.objectives),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            # What the results depend on, as the run started: config.yaml may be edited
            # (budget, backend), but a change here is refused on resume.
            "results_config": configs.results_part(cfg)}
    try:
        return RunDir.create(Path(cfg.runs_dir) / name, configs.to_dict(cfg), meta)
    except BaseException:
        backend.close()
        raise


def resume(path: str | Path, overrides: dict | None = None, progress=None) -> RunDir:
    run = RunDir.open(path)
    old = configs.from_mapping(run.config(), str(run.config_file))
    cfg = configs.from_mapping({**configs.to_dict(old), **(overrides or {})}, "resume")
    original = run.meta().get("results_config")
    if original is not None:
        old = configs.from_mapping({**configs.to_dict(old), **original}, str(run.meta_file))
    changed = configs.resume_changes(old, cfg)
    if changed:
        raise ConfigError(f"{run.path}: resuming with a different {changed[0]} would change the results; "
                          f"start a new run instead")
    if cfg.device != resolve_device(cfg.device):
        raise ConfigError(f"{run.path}: this run trained on {cfg.device}, which is not available here")
    records = run.journal(repair=True)
    snapshot = usable_snapshot(run, records)
    if cfg != old:  # an extended budget or another backend: the config on disk says so
        atomic_write(run.config_file, yaml.safe_dump(configs.to_dict(cfg), sort_keys=False))
    drive(cfg, run, records, snapshot, progress)
    return run


def usable_snapshot(run: RunDir, records: list[dict]) -> dict | None:
    """The newest snapshot whose evaluations are all in the journal. (Records are fsynced
    before the snapshot that follows them, so only damage makes one unusable; then an older
    snapshot, or the start, replays the journal to the same state.)"""
    finished = {r["id"] for r in records}
    for snapshot in run.snapshots():
        if set(range(snapshot["next_id"])) <= finished:
            return snapshot
        warnings.warn(f"{run.path}: snapshot of generation {snapshot['generation']} names evaluations the "
                      f"journal lacks; using an older one", stacklevel=2)
    return None


def drive(cfg: configs.RunConfig, run: RunDir, records: list[dict], snapshot: dict | None, progress=None,
          backend=None) -> None:
    backend = backend or make_backend(cfg)
    try:
        search = RunSearch(cfg, run, backend, make_evaluator(cfg), records, snapshot, progress)
        state = None
        if snapshot is not None:
            _restore_library_rng_states(snapshot)
            state = State(snapshot["generation"], [search.individual(search.by_id[i]) for i in snapshot["population"]])
        if progress is not None:
            progress.start(search, state)
        algorithms.ALGORITHMS[cfg.algorithm](search, state)
    except KeyboardInterrupt:
        raise Interrupted(f"the journal and the last snapshot are on disk: continue with "
                          f"`evonas resume {run.path}`") from None
    finally:
        backend.close()
        if progress is not None:
            progress.stop()


def make_backend(cfg: configs.RunConfig):
    if cfg.backend == "serial":
        from evo_nas.backends.serial import SerialBackend

        return SerialBackend()
    if cfg.backend == "local":
        from evo_nas.backends.local import LocalBackend

        return LocalBackend(cfg)
    from evo_nas.backends.ray import RayBackend

    return RayBackend(cfg)


def make_evaluator(cfg: configs.RunConfig):
    from evo_nas.evaluate.evaluator import Evaluator

    return Evaluator(eval_settings(cfg))


def eval_settings(cfg: configs.RunConfig):
    from evo_nas.build import Skeleton
    from evo_nas.evaluate.evaluator import DataSettings, EvalSettings
    from evo_nas.evaluate.train import TrainConfig

    shape, classes = dataset_shape(cfg)
    data = DataSettings(cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.train_limit, cfg.val_limit, cfg.seed)
    skeleton = Skeleton(input_shape=shape, classes=classes, init_channels=cfg.init_channels, layers=cfg.layers,
                        reductions=cfg.reductions)
    train = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                        label_smoothing=cfg.label_smoothing, optimizer=cfg.optimizer, cuda_graph=cfg.cuda_graph,
                        time_limit=cfg.time_limit, bn_recalibration=cfg.bn_recalibration)
    return EvalSettings(data, skeleton, train, cfg.device, cfg.max_macs, cfg.max_params, cfg.cpu_threads)


_SHAPES: dict = {}


def dataset_shape(cfg: configs.RunConfig) -> tuple[tuple[int, int, int], int]:
    key = (cfg.dataset, cfg.data_dir)
    if key not in _SHAPES:
        from evo_nas.evaluate.data import load_dataset

        dataset = load_dataset(cfg.dataset, cfg.data_dir)
        _SHAPES[key] = (dataset.input_shape, dataset.classes)
    return _SHAPES[key]


def _check_data(cfg: configs.RunConfig) -> None:
    """Fail before creating the run directory when the data are missing or malformed."""
    try:
        dataset_shape(cfg)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - unreadable data is the user's to fix
        raise ConfigError(f"dataset {cfg.dataset}: cannot be loaded ({type(err).__name__}: {err})") from None


def reference_point(cfg: configs.RunConfig, space: SearchSpace, seeds: list[Genome]) -> dict:
    """The hypervolume reference, fixed at the start of a run: error 1.0, and twice the
    largest MACs/params among the seeds and 16 random genomes (drawn from their own RNG, so
    the run's RNG stream is untouched). Stored in meta.json; never changes on resume."""
    from evo_nas.build import build
    from evo_nas.evaluate.count import count_macs, count_params

    shape, _ = dataset_shape(cfg)
    rng = random.Random(f"reference:{cfg.seed}")
    skeleton = eval_settings(cfg).skeleton
    macs, params = 1, 1
    for genome in seeds + [space.sample(rng) for _ in range(16)]:
        model = build(genome, skeleton)
        macs, params = max(macs, count_macs(model, shape)), max(params, count_params(model))
    return {"accuracy": 1.0, "macs": 2 * macs, "params": 2 * params}
