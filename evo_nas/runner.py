"""Runs: build a Search from a config and a run directory, drive an algorithm over it, keep the
directory current. `start(options)` creates `runs/<name>/` and searches; `resume(path)` continues.

Resumed == uninterrupted: the algorithm's RNG state is in every snapshot, each evaluation's
training seed depends only on the run seed and the individual's id, and evaluations already in
the journal (also those that finished after the last snapshot) are replayed, not retrained.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import warnings
from pathlib import Path

import yaml

from evo_nas import algorithms, backends, pareto
from evo_nas import config as configs
from evo_nas.config import RunConfig
from evo_nas.errors import ConfigError, Interrupted, RunDirError
from evo_nas.files import atomic_write
from evo_nas.genome import Genome
from evo_nas.genome_io import load_genome
from evo_nas.records import History, Record
from evo_nas.rng import state_from_json, state_to_json
from evo_nas.search import Archive, Individual, Search, State, Termination
from evo_nas.spaces.base import SearchSpace
from evo_nas.store import RunDir, history_frame, write_csv

# -- starting and resuming ---------------------------------------------------------------------

def start(options: dict, progress=None) -> RunDir:
    """A new run from the given settings (flat names, as flags and config files give them)."""
    from evo_nas.evaluate.devices import available

    device = available(options.get("device", "auto"))
    cfg = configs.from_mapping(options, "options", device)
    cfg = configs.from_mapping(options, "options", device, data_shape=dataset_shape(cfg))
    if cfg.stop.generations is None and cfg.stop.budget is None:
        raise ConfigError("config: set generations or budget")
    space = cfg.space.make(cfg.skeleton)
    seeds = load_seeds(cfg, space)  # bad seed files fail before anything is written
    name = cfg.run.name or time.strftime(f"{cfg.space.space}-{cfg.search.algorithm}-%Y%m%d-%H%M%S")
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=name))
    RunDir.refuse_existing(Path(cfg.run.runs_dir) / name)
    reference = reference_point(cfg, space, seeds)
    backend = backends.make(cfg.backend, cfg.train.time_limit)  # a missing package or cluster fails here
    try:
        meta = {"seed": cfg.seed, "reference_point": reference, "objectives": list(cfg.search.objectives),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": versions(),
                # What the results depend on, as the run started: config.yaml may be edited
                # (budget, backend), but a change here is refused on resume.
                "results_config": configs.results_part(cfg)}
        run = RunDir.create(Path(cfg.run.runs_dir) / name, configs.to_dict(cfg), meta)
    except BaseException:
        backend.close()
        raise
    drive(cfg, run, History(), None, space, seeds, progress, backend)
    return run


def resume(path: str | Path, overrides: dict | None = None, progress=None) -> RunDir:
    from evo_nas.evaluate.devices import available

    run = RunDir.open(path)
    stored = run.config()
    device = stored.get("backend", {}).get("device", "cpu") if isinstance(stored.get("backend"), dict) else "cpu"
    cfg = configs.from_mapping({**configs.flatten(stored, str(run.config_file)), **(overrides or {})}, "resume", device)
    original = run.meta().get("results_config")
    changed = configs.resume_changes(original, cfg) if original is not None else []
    if changed:
        raise ConfigError(f"{run.path}: resuming with a different {changed[0]} would change the results; "
                          f"start a new run instead")
    if available(device) != device:
        raise ConfigError(f"{run.path}: this run trained on {device}, which is not available here")
    history = run.history(repair=True)
    snapshot = usable_snapshot(run, history)
    space = cfg.space.make(cfg.skeleton)
    seeds = load_seeds(cfg, space)
    if configs.to_dict(cfg) != stored:  # an extended budget or another backend: the config on disk says so
        atomic_write(run.config_file, yaml.safe_dump(configs.to_dict(cfg), sort_keys=False))
    drive(cfg, run, history, snapshot, space, seeds, progress)
    return run


def versions() -> dict:
    """What the run was made with: evonas, torch, Python (for the report and for people)."""
    import platform

    import torch

    from evo_nas import __version__

    return {"evonas": __version__, "torch": torch.__version__, "python": platform.python_version()}


def usable_snapshot(run: RunDir, history: History) -> dict | None:
    """The newest snapshot whose evaluations are all in the journal. (Records are fsynced
    before the snapshot that follows them, so only damage makes one unusable; then an older
    snapshot, or the start, replays the journal to the same state.)"""
    finished = {r.id for r in history.records}
    for snapshot in run.snapshots():
        if set(range(snapshot["next_id"])) <= finished:
            return snapshot
        warnings.warn(f"{run.path}: snapshot of generation {snapshot['generation']} names evaluations the "
                      f"journal lacks; using an older one", stacklevel=2)
    return None


def load_seeds(cfg: RunConfig, space: SearchSpace) -> list[Genome]:
    seeds = []
    for path in cfg.search.seed_genomes:
        genome = load_genome(path)
        space.validate(genome, str(path))
        seeds.append(genome)
    return seeds


_SHAPES: dict = {}


def dataset_shape(cfg: RunConfig) -> tuple[tuple[int, int, int], int]:
    """(input shape, classes) of the run's data set; loading it checks it, before anything is written."""
    from evo_nas.evaluate.data import load_dataset

    key = (cfg.data.dataset, cfg.data.data_dir)
    if key not in _SHAPES:
        dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir)
        _SHAPES[key] = (dataset.input_shape, dataset.classes)
    return _SHAPES[key]


def reference_point(cfg: RunConfig, space: SearchSpace, seeds: list[Genome]) -> dict:
    """The hypervolume reference, fixed at the start of a run: error 1.0, and twice the
    largest MACs/params among the seeds and 16 random genomes (drawn from their own RNG, so
    the run's RNG stream is untouched). Stored in meta.json; never changes on resume."""
    from evo_nas.evaluate.count import largest

    rng = random.Random(f"reference:{cfg.seed}")
    macs, params = largest(seeds + [space.sample(rng) for _ in range(16)], cfg.skeleton)
    return {"accuracy": 1.0, "macs": 2 * macs, "params": 2 * params}


# -- driving a run -------------------------------------------------------------------------------

def drive(cfg: RunConfig, run: RunDir, history: History, snapshot: dict | None, space: SearchSpace,
          seeds: list[Genome], progress=None, backend=None) -> None:
    from evo_nas.evaluate.evaluator import EvalSettings, Evaluator

    backend = backend or backends.make(cfg.backend, cfg.train.time_limit)
    try:
        job = Job(cfg, run, history, snapshot, space, seeds, backend, Evaluator(EvalSettings.of(cfg)), progress)
        if progress is not None:
            progress.start(job)
        algorithms.ALGORITHMS[cfg.search.algorithm](job.search, job.state)
    except KeyboardInterrupt:
        raise Interrupted(f"the journal and the last snapshot are on disk: continue with "
                          f"`evonas resume {run.path}`") from None
    finally:
        backend.close()
        if progress is not None:
            progress.stop()


class Job:
    """One run being searched: its Search, built from the config, the journal and the last
    snapshot. Its evaluate() is the Search's: dedup through the archive, replay of journal
    records, successive halving, the backend's map, and a journal line per result."""

    def __init__(self, cfg: RunConfig, run: RunDir, history: History, snapshot: dict | None, space: SearchSpace,
                 seeds: list[Genome], backend, evaluator, progress=None):
        self.cfg, self.run, self.backend, self.evaluator, self.progress = cfg, run, backend, evaluator, progress
        next_id = snapshot["next_id"] if snapshot is not None else 0
        self.history = History(r for r in history.records if r.id < next_id)
        self.replay = {(r.id, r.rung): r for r in history.records if r.id >= next_id}  # ids not reached yet
        archive = _restored_archive(space, next_id, self.history)
        rng = random.Random(cfg.seed)
        if snapshot is not None:
            state_from_json(snapshot["rng"], rng)
            state_from_json(snapshot["python_rng"], random)  # DEAP's operators draw from it
        self.search = Search(space, cfg.search, rng, archive, self.evaluate, Termination.of(cfg.stop, cfg.search),
                             seeds, callbacks=[self.checkpoint])
        self.state = None if snapshot is None else State(snapshot["generation"], [
            self._individual(self.history.final(i)) for i in snapshot["population"]])
        self.generation = self.state.generation if self.state is not None else 0

    # -- Search.evaluate -----------------------------------------------------------------
    def evaluate(self, individuals: list[Individual]) -> None:
        archive = self.search.archive
        self._check_replay(individuals)
        cached, fresh, twins = archive.split(individuals)
        for ind in cached:
            self._serve(ind)
        rungs = self.cfg.search.sha_rungs if self.cfg.search.fidelity == "sha" else 1
        alive = fresh
        for rung in range(rungs):
            self._run_rung(alive, rung, rungs)
            if rung + 1 < rungs:
                alive = _better_half(alive, self.cfg.search.objectives)
        for ind in fresh:  # first evaluations of their networks: the cache from now on
            archive.remember(ind, fresh=True)
        for ind in twins:
            self._serve(ind)

    def _check_replay(self, individuals: list[Individual]) -> None:
        for ind in individuals:
            replayed = self.replay.get((ind.id, 0))
            if replayed is not None and replayed.key != ind.key:
                raise RunDirError(f"{self.run.path}: the journal disagrees with this run at evaluation {ind.id} "
                                  f"(was evonas or the config changed?); start a new run")

    def _run_rung(self, individuals: list[Individual], rung: int, rungs: int) -> None:
        from evo_nas.evaluate.evaluator import Task, eval_seed

        epochs = self.cfg.train.epochs * 2.0 ** (rung - rungs + 1)  # halving: ..., 1/4, 1/2, 1 of the budget
        todo = []
        for ind in individuals:
            replayed = self.replay.pop((ind.id, rung), None)
            if replayed is not None:
                self._finish(ind, replayed, write=False)
            else:
                todo.append(ind)
        tasks = [Task(ind.id, ind.genome, eval_seed(self.cfg.seed, ind.id), epochs, rung) for ind in todo]
        for i, result in self.backend.map(self.evaluator, tasks):
            self._finish(todo[i], _record(todo[i], result, rung), write=True)

    def _serve(self, ind: Individual) -> None:
        """A network evaluated before: reuse its result, and record that we did."""
        record = self.replay.pop((ind.id, 0), None)
        if record is None:
            original = self.history.by_key(ind.key)
            result = dataclasses.replace(original.result, wall_time=0.0, images_per_s=None)
            self._finish(ind, _record(ind, result, original.rung, cache_of=original.id), write=True)
        else:
            self._finish(ind, record, write=False)
        self.search.archive.remember(ind, fresh=False)

    def _finish(self, ind: Individual, record: Record, write: bool) -> None:
        if write:
            self.run.append(record)
        ind.result = record.result
        self.history.add(record)
        if self.progress is not None:
            self.progress.evaluation_done(self, record)

    # -- after each generation -----------------------------------------------------------
    def checkpoint(self, state: State) -> None:
        self.generation = state.generation
        snapshot = {"generation": state.generation, "next_id": self.search.archive.next_id,
                    "population": [ind.id for ind in state.population], "rng": state_to_json(self.search.rng),
                    "python_rng": state_to_json(random)}
        self.run.save_snapshot(state.generation, snapshot)
        if self.cfg.run.report:
            from evo_nas import report

            report.refresh(self.run)  # report.html, front.csv, history.csv
        else:
            write_csv(history_frame(self.history), self.run.history_file)
        if self.progress is not None:
            self.progress.generation_done(self, state)

    def progress_fraction(self, state: State | None = None) -> float:
        return self.search.termination.progress(state, self.search.archive)

    def _individual(self, record: Record) -> Individual:
        """An individual rebuilt from its final record (for a restored population)."""
        return Individual(record.id, record.genome, record.key, record.generation, record.parents, record.operator,
                          record.result)


def _restored_archive(space: SearchSpace, next_id: int, history: History) -> Archive:
    archive = Archive(space, next_id)
    for record in history.finals():
        archive.seen.add(record.key)
        if record.cache_of is None:
            archive.cache.setdefault(record.key, history.by_key(record.key).result)
    archive.evaluated = history.trained()
    return archive


def _better_half(individuals: list[Individual], objectives) -> list[Individual]:
    """Successive halving: the better half by Pareto rank (then crowding) goes on training."""
    ok = [ind for ind in individuals if ind.ok]
    keep = pareto.select_nsga2(algorithms.vectors(ok, objectives), math.ceil(len(individuals) / 2))
    return [ok[i] for i in sorted(keep)]


def _record(ind: Individual, result, rung: int = 0, cache_of: int | None = None) -> Record:
    return Record(ind.id, ind.generation, ind.genome, ind.key, result, rung, ind.parents, ind.operator,
                  cache_of=cache_of, finished=_now())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
