"""Runs: build a Search from a config and a run directory, drive an algorithm over it, keep the
directory current. `start(options)` creates `runs/<name>/` and searches; `resume(path)` continues.

Resumed == uninterrupted: the algorithm's RNG state is in every snapshot, each evaluation's
training seed depends only on the run seed and the individual's id, and evaluations already in
the journal (also those that finished after the last snapshot) are replayed, not retrained.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
import time
from pathlib import Path

import yaml

from evo_nas import algorithms, backends, pareto
from evo_nas import config as configs
from evo_nas.config import RunConfig
from evo_nas.errors import ConfigError, Interrupted, SearchFailed
from evo_nas.files import atomic_write
from evo_nas.genome import Genome
from evo_nas.genome_io import load_genome
from evo_nas.journaled import Journaled, Request
from evo_nas.records import PROXY, History, Record, Status
from evo_nas.rng import eval_seed, state_from_json, state_to_json
from evo_nas.search import Archive, Individual, Search, State, Termination
from evo_nas.spaces.base import SearchSpace
from evo_nas.store import RunDir, history_frame, write_csv

# -- starting and resuming ---------------------------------------------------------------------

def plan(options: dict) -> RunConfig:
    """The resolved config a run of these settings (flat names, as flags and config files give
    them) would have; checks everything that can be checked without writing or training."""
    from evo_nas.evaluate.devices import available

    device = available(options.get("device", "auto"))
    cfg = configs.from_mapping(options, "options", device)
    given_classes = configs.flatten(options, "options").get("classes")
    cfg = configs.from_mapping(options, "options", device, data_shape=dataset_shape(cfg, given_classes))
    if cfg.stop.generations is None and cfg.stop.budget is None:
        raise ConfigError("config: set generations or budget")
    load_seeds(cfg, cfg.space.make(cfg.skeleton))  # bad seed files fail before anything is written
    name = cfg.run.name or time.strftime(f"{cfg.space.space}-{cfg.search.algorithm}-%Y%m%d-%H%M%S")
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=name))


def estimate(cfg: RunConfig) -> dict:
    """How much work a run plans: candidates, trainings (repeats and successive-halving rungs
    counted) and training images, at most (dedup can only make it less)."""
    termination = Termination.of(cfg.stop, cfg.search)
    per_generation = cfg.search.children
    candidates = cfg.stop.budget if cfg.stop.budget is not None else cfg.search.population + per_generation * (
        cfg.stop.generations or 0)
    if cfg.stop.budget is not None and cfg.stop.generations is not None:
        candidates = min(candidates, cfg.search.population + per_generation * cfg.stop.generations)
    rungs = cfg.search.sha_rungs if cfg.search.fidelity == "sha" else 1
    trainings = sum(math.ceil(candidates / 2 ** r) for r in range(rungs)) * cfg.search.repeats
    shares = sum(2.0 ** (r - rungs + 1) * math.ceil(candidates / 2 ** r) for r in range(rungs))  # epochs halve
    images = cfg.data.train_limit or "the training split"
    return {"candidates": candidates, "trainings": trainings, "epochs per training": cfg.train.epochs,
            "training images per epoch": images, "epochs in all": round(shares * cfg.search.repeats *
                                                                        cfg.train.epochs, 2),
            "max individuals (dedup exhausted)": termination.max_individuals}


def start(options: dict, progress=None) -> RunDir:
    """A new run from the given settings (flat names, as flags and config files give them)."""
    cfg = plan(options)
    space = cfg.space.make(cfg.skeleton)
    seeds = load_seeds(cfg, space)
    name = cfg.run.name
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
        with run.locked():
            drive(cfg, run, History(), None, space, seeds, progress, backend)
    finally:
        backend.close()
    return run


def resume(path: str | Path, overrides: dict | None = None, progress=None) -> RunDir:
    """Continue a run where it stopped; `overrides` may extend it (generations, budget) or move it
    to another backend, nothing that would change its results."""
    run = RunDir.open(path)
    with run.locked():
        cfg, history, snapshot = _resumable(run, overrides or {})
        space = cfg.space.make(cfg.skeleton)
        seeds = load_seeds(cfg, space)
        if configs.to_dict(cfg) != run.config():  # an extended budget or another backend: the config on disk says so
            atomic_write(run.config_file, yaml.safe_dump(configs.to_dict(cfg), sort_keys=False))
        drive(cfg, run, history, snapshot, space, seeds, progress)
    return run


def _resumable(run: RunDir, overrides: dict) -> tuple[RunConfig, History, dict | None]:
    """The config a resume runs with, the journal and the snapshot to continue from; every
    check that can fail does so here, before anything is trained or written."""
    from evo_nas.evaluate.devices import available

    stored = configs.flatten(run.config(), str(run.config_file))
    device = stored.get("device", "cpu")
    cfg = configs.from_mapping({**stored, **overrides}, "resume", device)
    original = run.meta().get("results_config")
    changed = configs.resume_changes(original, cfg) if original is not None else []
    if changed:
        raise ConfigError(f"{run.path}: resuming with a different {changed[0]} would change the results; "
                          f"start a new run instead")
    if available(device) != device:
        raise ConfigError(f"{run.path}: this run trained on {device}, which is not available here")
    run.check_writable()
    history = run.history(repair=True)
    snapshot = usable_snapshot(run, history)
    _refuse_shrinking(run, overrides, snapshot["generation"] if snapshot else 0, history.trained())
    return cfg, history, snapshot


def _refuse_shrinking(run: RunDir, overrides: dict, generations: int, trained: int) -> None:
    """A resume may extend a run, never cut it below what it has done."""
    for name, done, what in (("generations", generations, "generations done"), ("budget", trained,
                                                                                  "networks trained")):
        wanted = overrides.get(name)
        if wanted is not None and wanted < done:
            raise ConfigError(f"{run.path}: has {done} {what}; --{name} {wanted} is below that "
                              f"(give at least {done} to continue, more to extend it)")


def versions() -> dict:
    """What the run was made with: evonas, torch, Python (for the report and for people)."""
    import platform

    import torch

    from evo_nas import __version__

    return {"evonas": __version__, "torch": torch.__version__, "python": platform.python_version()}


def usable_snapshot(run: RunDir, history: History) -> dict | None:
    """The newest snapshot whose evaluations are all in the journal (RunDir.usable_snapshot)."""
    return run.usable_snapshot({r.id for r in history.records})


def load_seeds(cfg: RunConfig, space: SearchSpace) -> list[Genome]:
    seeds = []
    for path in cfg.search.seed_genomes:
        genome = load_genome(path)
        space.validate(genome, str(path))
        seeds.append(genome)
    return seeds


def dataset_shape(cfg: RunConfig, classes: int | None = None) -> tuple[tuple[int, int, int], int]:
    """(input shape, classes) of the run's data set (`classes`: the count the user named, for npz
    data); loading it checks it, before anything is written."""
    from evo_nas.evaluate.data import cached_dataset

    dataset = cached_dataset(cfg.data.dataset, cfg.data.data_dir, classes)
    return dataset.input_shape, dataset.classes


def dataset_size(cfg: RunConfig) -> int:
    """Images in the run's training split (the training set less the validation share)."""
    from evo_nas.evaluate.data import cached_dataset, split

    dataset = cached_dataset(cfg.data.dataset, cfg.data.data_dir, cfg.skeleton.classes)
    return len(split(len(dataset.y_train), cfg.data.val_fraction, cfg.seed)[0])


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
    except KeyboardInterrupt as stop:
        raise Interrupted(f"the journal and the last snapshot are on disk: continue with "
                          f"`evonas resume {run.path}`", getattr(stop, "signum", 2)) from None
    finally:
        backend.close()
        if progress is not None:
            progress.stop()


class Job:
    """One run being searched: its Search, built from the config, the journal and the last
    snapshot. Its evaluate() is the Search's: dedup through the archive, successive halving and
    repeats, then the journaled evaluator (replay of journal records, the backend's map, a
    journal line per result)."""

    def __init__(self, cfg: RunConfig, run: RunDir, history: History, snapshot: dict | None, space: SearchSpace,
                 seeds: list[Genome], backend, evaluator, progress=None):
        self.cfg, self.run, self.progress = cfg, run, progress
        next_id = snapshot["next_id"] if snapshot is not None else 0
        self.history = History(r for r in history.records if r.id < next_id)
        self.journaled = Journaled(run, backend, {PROXY: evaluator}, self.history,
                                   replay=[r for r in history.records if r.id >= next_id],  # not reached yet
                                   on_record=progress and (lambda record: progress.evaluation_done(self, record)),
                                   on_steps=progress and (lambda steps: progress.steps_done(self, steps)))
        archive = _restored_archive(space, next_id, self.history)
        rng = random.Random(cfg.seed)
        if snapshot is not None:
            state_from_json(snapshot["rng"], rng)  # DEAP's draws too: variation lends it this rng for each call
        self.search = Search(space, cfg.search, rng, archive, self.evaluate, Termination.of(cfg.stop, cfg.search),
                             seeds, callbacks=[self.checkpoint], predictor=predictor(cfg, space))
        self.state = None if snapshot is None else State(snapshot["generation"], [
            individual(self.history.final(i)) for i in snapshot["population"]])
        self.generation = self.state.generation if self.state is not None else 0
        self.generation_results: list = []  # of this generation, for the all-failed check
        self.planned = estimate(cfg)["candidates"]

    # -- Search.evaluate -----------------------------------------------------------------
    def evaluate(self, individuals: list[Individual]) -> None:
        archive = self.search.archive
        cached, fresh, twins = archive.split(individuals)
        for ind in cached:
            self._serve(ind)
        rungs = self.cfg.search.sha_rungs if self.cfg.search.fidelity == "sha" else 1
        alive = fresh
        for rung in range(rungs):
            self._train(alive, rung, rungs)
            if rung + 1 < rungs:
                alive = _better_half(alive, self.cfg.search.objectives, self.cfg.search.tie_width)
        for ind in fresh:  # first evaluations of their networks: the cache from now on
            archive.remember(ind, fresh=True)
        for ind in twins:
            self._serve(ind)
        self.generation_results += [ind.result for ind in individuals]

    def _train(self, individuals: list[Individual], rung: int, rungs: int) -> None:
        """One successive-halving rung (the only one without halving): every repeat of each."""
        epochs = self.cfg.train.epochs * 2.0 ** (rung - rungs + 1)  # halving: ..., 1/4, 1/2, 1 of the budget
        self.journaled.evaluate([_request(ind, self.cfg.seed, rung, repeat, epochs) for ind in individuals
                                 for repeat in _repeats(self.cfg.search.repeats)])
        for ind in individuals:  # its result: the rung's trainings combined
            ind.result = self.history.final(ind.id).result

    def _serve(self, ind: Individual) -> None:
        """A network evaluated before: reuse its result, and record that we did."""
        original = self.history.by_key(ind.key)
        request = _request(ind, self.cfg.seed, original.rung)
        record = self.journaled.replayed(request)
        if record is None:
            record = request.record(dataclasses.replace(original.result, wall_time=0.0, images_per_s=None,
                                                        memory_reserved=None), cache_of=original.id)
            self.journaled.add(record)
        ind.result = record.result
        self.search.archive.remember(ind, fresh=False)

    # -- after each generation -----------------------------------------------------------
    def checkpoint(self, state: State) -> None:
        self.generation, self.state = state.generation, state
        snapshot = {"generation": state.generation, "next_id": self.search.archive.next_id,
                    "population": [ind.id for ind in state.population], "rng": state_to_json(self.search.rng)}
        self.run.save_snapshot(state.generation, snapshot)
        if self.cfg.run.report:
            from evo_nas import report

            report.refresh(self.run)  # report.html, front.csv, history.csv
        else:
            write_csv(history_frame(self.history, self.cfg.search.objectives), self.run.history_file)
        if self.progress is not None:
            self.progress.generation_done(self, state)
        results, self.generation_results = self.generation_results, []
        if results and all(r.status is Status.FAILED for r in results):  # infeasible ones are answers
            raise SearchFailed(_all_failed(state.generation, results, self.run.path))

    def progress_fraction(self, state: State | None = None) -> float:
        return self.search.termination.progress(state, self.search.archive)


def individual(record: Record) -> Individual:
    """An individual rebuilt from its final record (for a restored population and archive)."""
    return Individual(record.id, record.genome, record.key, record.generation, record.parents, record.operator,
                      record.result, record.predicted, record.screen_s)


def predictor(cfg: RunConfig, space: SearchSpace):
    """The run's predictor.Predictor with `--predictor` (None without): genomes measured with torch,
    in this process, when it first screens."""
    if not cfg.search.predictor:
        return None
    from evo_nas.evaluate.zero_cost import measurer
    from evo_nas.predictor import Predictor

    return Predictor(space, cfg.seed, measurer(cfg))


def _restored_archive(space: SearchSpace, next_id: int, history: History) -> Archive:
    archive = Archive(space, next_id)
    for record in history.finals():
        archive.seen.add(record.key)
        if record.cache_of is None:
            archive.cache.setdefault(record.key, history.by_key(record.key).result)
            archive.evaluations.append(individual(record))
    archive.evaluated = history.trained()
    return archive


def _all_failed(generation: int, results: list, path: Path) -> str:
    reasons = collections.Counter(r.error or str(r.status) for r in results)
    reason, count = reasons.most_common(1)[0]
    return (f"no evaluation of generation {generation} succeeded ({len(results)} tried); the most common "
            f"reason ({count} of {len(results)}): {reason}; the run is on disk: fix the cause, then "
            f"`evonas resume {path}`")


def _better_half(individuals: list[Individual], objectives, tie_width: float) -> list[Individual]:
    """Successive halving: the better half by Pareto rank (then crowding) goes on training."""
    ok = [ind for ind in individuals if ind.ok]
    keep = pareto.select_nsga2(algorithms.vectors(ok, objectives, tie_width), math.ceil(len(individuals) / 2))
    return [ok[i] for i in sorted(keep)]


def _request(ind: Individual, run_seed: int, rung: int, repeat: int | None = None,
             epochs: float | None = None) -> Request:
    return Request(ind.id, ind.genome, eval_seed(run_seed, ind.id, repeat), epochs, rung, ind.key, repeat,
                   generation=ind.generation, parents=ind.parents, operator=ind.operator, predicted=ind.predicted,
                   screen_s=ind.screen_s)


def _repeats(count: int) -> list[int | None]:
    """The `repeat` of each training of a candidate: None alone, 0..R-1 for R > 1."""
    return [None] if count == 1 else list(range(count))

