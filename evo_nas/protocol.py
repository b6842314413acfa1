"""`evonas study` on real training: does a search find better networks than random search at the
same budget, and than networks a person would design? The NAS evaluation protocol (docs/study.md):

1. every arm (each algorithm, and random search) searches once per seed at one budget of trained
   evaluations; each search is an ordinary run directory (journal, lock, resume, report);
2. what each search returns (its best network by proxy accuracy, then members of its front) is
   trained again by the final protocol: the one training engine of `evonas train`, longer, on
   the whole training split, and tested once on the test split;
3. baselines go through the same final protocol: the published cells (cells space) and a
   hand-designed conv-BN-ReLU network of the returned networks' median size;
4. the statistics (study_stats.py) and the outputs: study.csv, study.json, study.html.

The study directory is a run directory of its own: its journal holds the final trainings (one
journaled evaluator, fidelity "final"), its config.yaml the settings, and `searches/` the runs.
Killed at any moment, the same command (or `evonas resume DIR`) continues: finished searches
and trainings are read back, a search in progress resumes, a final training in progress goes
on from its last epoch's checkpoint.   [no torch at import]
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from evo_nas import backends, runner
from evo_nas import config as configs
from evo_nas.config import StudySettings
from evo_nas.errors import ConfigError, Interrupted, RunDirError
from evo_nas.files import atomic_write
from evo_nas.genome import Genome
from evo_nas.genome_io import PACKAGED, load_genome
from evo_nas.journaled import Journaled, Request
from evo_nas.records import History, Record
from evo_nas.rng import derive_seed
from evo_nas.store import RunDir

FINAL = "final"  # the fidelity of a final training's journal line
PUBLISHED = ("nasnet_a", "amoebanet_a", "darts_v2")  # genomes/ files: the cells baselines
HAND_DESIGNED = "hand-designed"
RUN_ONLY = ("seed", "algorithm", "generations", "seed_genomes")  # a study sets these for each search itself

# The study's sizes per machine. cpu: Fashion-MNIST on 2 cores, each space's whole study in
# about 90 minutes (README, "Search quality on real data", measured): the search proxy is the
# space's CPU default, a final training one epoch of the whole training set (60,000 images
# for Fashion-MNIST: 20x the cells proxy's 3,000) in the proxy's skeleton, 3 seeds per arm. gpu:
# chosen on paper for one 10-minute call on one GPU (the GPU proxy at ~2.4 s an evaluation,
# docs/performance.md), unmeasured until a GPU is lent: a budget of 32 evaluations, final
# trainings of 5 epochs in DARTS' search network (C=16, 8 cells); CIFAR-10 where the data
# folder has it, else Fashion-MNIST.
PRESETS = {
    "cpu": {"device": "cpu", "seeds": 3, "budget": 32, "returns": 2, "final_epochs": 1},
    "gpu": {"device": "cuda", "seeds": 3, "budget": 32, "returns": 2, "final_epochs": 5},
}
# On a CPU a study trains one candidate per core, each on one thread (the local backend): on a
# machine with other work, a two-thread training waits at every parallel step for its second
# thread (seen here once: about 3 minutes an evaluation instead of about 10 s, load average 5.5).
CPU_BACKEND = {"backend": "local", "cpu_threads": 1}


@dataclass(frozen=True)
class Plan:
    """A study: its settings, the run options every search shares, and where it lives."""

    settings: StudySettings
    options: dict  # flat run options of every search (each adds its algorithm, seed, name)
    path: Path

    @property
    def arms(self) -> tuple[str, ...]:
        return self.settings.arms

    def searches(self) -> list[tuple[str, int]]:
        s = self.settings
        return [(arm, seed) for arm in self.arms for seed in range(s.first_seed, s.first_seed + s.seeds)]


# -- planning ----------------------------------------------------------------------------------

def plan(given: dict, study: StudySettings) -> Plan:
    """The resolved study for these run options and study settings; checks what can be checked
    before anything is written or trained (each search's config among it)."""
    preset = PRESETS[study.preset or ("gpu" if _device(given) == "cuda" else "cpu")]
    study = dataclasses.replace(study, preset=study.preset or ("gpu" if preset["device"] == "cuda" else "cpu"),
                                **{k: getattr(study, k) or preset[k] for k in ("seeds", "returns", "final_epochs")})
    study = dataclasses.replace(study, algorithms=study.algorithms or ("nsga2",))
    refused = sorted(k for k in given if k in RUN_ONLY)
    if refused:
        raise ConfigError(f"study: {refused[0]}: a study sets it for each search itself (seeds: --seeds and "
                          f"--first-seed; algorithms: --algorithms)")
    machine = {**CPU_BACKEND, "workers": configs.cores()} if preset["device"] == "cpu" else {}
    options = {"device": preset["device"], "budget": preset["budget"], **machine, **_dataset(study.preset, given),
               **given}
    options.pop("name", None)
    for arm in study.arms:  # every search's config, checked now
        runner.plan(_search_options(options, arm, study.first_seed, Path("unused"), int(options["budget"])))
    name = given.get("name") or f"study-{options.get('space', 'cells')}-{options.get('dataset', 'fashion-mnist')}-" \
                                 f"{study.preset}"
    configs.RunInfo(name=name)  # one folder name
    return Plan(study, options, Path(given.get("runs_dir", "runs")) / name)


def _dataset(preset: str, given: dict) -> dict:
    """The gpu preset studies CIFAR-10 where --data-dir (or $EVONAS_DATA) holds it, else
    Fashion-MNIST (evonas's default); a data set given is never replaced."""
    from evo_nas.evaluate.data import present

    if preset == "gpu" and "dataset" not in given and present("cifar10", given.get("data_dir")):
        return {"dataset": "cifar10"}
    return {}


def _device(given: dict) -> str:
    from evo_nas.evaluate.devices import available

    return available(given.get("device", "auto"))


def _search_name(arm: str, seed: int) -> str:
    """A search's folder: nsga2-seed0, nsga2-predictor-seed0 (a name is letters, digits, '.', '_', '-')."""
    return f"{arm.replace('+', '-')}-seed{seed}"


def _search_options(options: dict, arm: str, seed: int, searches: Path, budget: int) -> dict:
    """One search's run options: its algorithm (an arm "nsga2+predictor" is nsga2 with
    `predictor` on), seed and name in the study's searches folder, and a population fitting the
    budget (a quarter of it: an initial population and three generations) unless the options
    name one."""
    population = options.get("population") or max(4, budget // 4)
    algorithm = arm.removesuffix(configs.PREDICTED)
    out = {**{k: v for k, v in options.items() if k != "runs_dir"}, "algorithm": algorithm, "seed": seed,
           "name": _search_name(arm, seed), "runs_dir": str(searches), "population": population, "budget": budget}
    if algorithm != arm:
        out["predictor"] = True
    if algorithm == "aging":
        out.setdefault("sample", max(2, population // 2))
    return out


# -- starting and continuing ---------------------------------------------------------------------

def start(given: dict, study: StudySettings, progress=None) -> RunDir:
    """A new study, or the continuation of the one these settings name (the same command again)."""
    p = plan(given, study)
    config = {"study": _plain(dataclasses.asdict(p.settings)), "options": _plain(p.options)}
    if p.path.exists():
        existing = RunDir.open(p.path)
        if _results_part(existing.config()) != _results_part(config):
            raise RunDirError(f"{p.path}: holds a study with other settings; continue it with `evonas resume "
                              f"{p.path}`, or give another --name")
        return run(existing, p, progress)
    meta = {"kind": "study", "seed": p.settings.first_seed, "objectives": ["accuracy", "params"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": runner.versions(), "reference_point": {}}
    return run(RunDir.create(p.path, config, meta), p, progress)


def _results_part(config: dict) -> dict:
    """What a study's results depend on: its settings, and its searches' options but those a run
    may change when it continues (backend, workers, the data's folder, ...)."""
    return {"study": config["study"], "options": {k: v for k, v in config["options"].items()
                                                  if k not in configs.RESUMABLE}}


def resume(path: str | Path, progress=None) -> RunDir:
    study = load(path)
    return run(study, _plan_of(study), progress)


def _plan_of(study: RunDir) -> Plan:
    config = study.config()
    settings = configs.group_from(StudySettings, config["study"], str(study.config_file))
    return Plan(settings, config["options"], study.path)


def outputs(study: RunDir):
    """study.csv, .json and .html rewritten from what is on disk (a finished study, or the
    part a stopped one has done); the summary."""
    summary = summary_of(study)
    write(study, summary)
    return summary


def summary_of(study: RunDir):
    """What the study on disk has found so far (study_stats.Summary); writes nothing."""
    p = _plan_of(study)
    searches = [s for s in (_finished_search(p, k, arm, seed) for k, (arm, seed) in enumerate(p.searches())) if s]
    return summarise(p, searches, study.history().of(FINAL))


def _finished_search(p: Plan, index: int, arm: str, seed: int) -> SearchDone | None:
    path = p.path / "searches" / _search_name(arm, seed)
    return _search_done(p, index, arm, seed, RunDir.open(path)) if path.exists() else None


def is_study(run_dir: RunDir) -> bool:
    return run_dir.meta().get("kind") == "study"


def run(study: RunDir, p: Plan, progress=None) -> RunDir:
    """Search, train what the searches return, train the baselines, write the outputs."""
    progress = progress or _Quiet()
    with study.locked():
        study.check_writable()
        try:
            progress.start(p)
            searches = [_search(p, k, arm, seed, progress) for k, (arm, seed) in enumerate(p.searches())]
            _final_trainings(study, p, searches, progress)
            outputs(study)
        except KeyboardInterrupt as stop:
            raise Interrupted(f"what finished is on disk: continue with the same command, or `evonas resume "
                              f"{study.path}`", getattr(stop, "signum", 2)) from None
        finally:
            progress.stop()
    return study


@dataclass(frozen=True)
class SearchDone:
    """A finished search: its arm and seed, its history, its seconds of training and what it returns."""

    index: int  # in the plan's order: fixes the ids of its final trainings
    arm: str
    seed: int
    path: Path
    history: History
    seconds: float
    returned: list[Record]


def _search(p: Plan, index: int, arm: str, seed: int, progress) -> SearchDone:
    searches = p.path / "searches"
    options = _search_options(p.options, arm, seed, searches, int(p.options["budget"]))
    path = searches / options["name"]
    progress.stage(f"search {index + 1} of {len(p.searches())}: {arm}, seed {seed}")
    quiet = progress.for_search()
    run_dir = runner.resume(path, progress=quiet) if path.exists() else runner.start(options, progress=quiet)
    return _search_done(p, index, arm, seed, run_dir)


def _search_done(p: Plan, index: int, arm: str, seed: int, run_dir: RunDir) -> SearchDone:
    history = run_dir.history()
    seconds = round(sum(r.wall_time or 0.0 for r in history.records), 3)
    return SearchDone(index, arm, seed, run_dir.path, history, seconds, returned(history, p.settings.returns))


def returned(history: History, count: int) -> list[Record]:
    """What a search returns: its best network by proxy accuracy, then up to count - 1 other
    members of its front over (accuracy, params), spread over the front by size (the smallest
    first, then the ones nearest to even steps between the smallest and the best)."""
    front = history.front(("accuracy", "params"))  # best accuracy first
    if not front:
        return []
    best, rest = front[0], sorted(front[1:], key=lambda r: r.params)
    chosen: list[Record] = []
    for k in range(min(count - 1, len(rest))):
        target = rest[0].params + (best.params - rest[0].params) * k / max(count - 1, 1)
        chosen.append(min((r for r in rest if r not in chosen), key=lambda r: abs(r.params - target)))
    return [best, *sorted(chosen, key=lambda r: r.params)]


# -- the final protocol ---------------------------------------------------------------------------

def _final_trainings(study: RunDir, p: Plan, searches: list[SearchDone], progress) -> None:
    """Every returned network and every baseline trained by the final protocol, journaled."""
    from evo_nas.fulltrain import FinalEvaluator, FinalSettings

    journal = study.history(repair=True)
    history = History(fidelity=FINAL)
    settings = FinalSettings.of(p, study.path / "final")
    backend = backends.make(runner.plan({**p.options, "name": "final"}).backend, 0.0)  # the searches' backend
    journaled = Journaled(study, backend, {FINAL: FinalEvaluator(settings)}, history,
                          replay=journal.records + journal.others, on_record=progress.final_done)
    try:
        requests = _returned_requests(p, searches)
        progress.stage(f"final trainings of what the searches returned ({len(requests)})", len(requests))
        journaled.evaluate(requests)
        if p.settings.baselines:
            extra = baselines(p, [r.genome for r in requests], settings.skeleton_of)
            progress.stage(f"final trainings of the baselines ({len(extra)})", len(extra))
            journaled.evaluate(_baseline_requests(p, extra))
    finally:
        backend.close()


def _returned_requests(p: Plan, searches: list[SearchDone]) -> list[Request]:
    """Ids are fixed by the plan (search k's r-th network: k * returns + r), so they do not
    depend on when a study was stopped."""
    out = []
    for s in searches:
        for r, record in enumerate(s.returned):
            ident = s.index * p.settings.returns + r
            out.append(Request(ident, record.genome, derive_seed(p.settings.first_seed, "final", ident),
                               key=record.key, fidelity=FINAL, operator=f"{s.arm}:seed{s.seed}:#{record.id}"))
    return out


def _baseline_requests(p: Plan, genomes: list[Genome]) -> list[Request]:
    from evo_nas.spaces import entry

    first = len(p.searches()) * p.settings.returns
    return [Request(first + b, g, derive_seed(p.settings.first_seed, "final", first + b),
                    key=entry(g.space).space().key(g), fidelity=FINAL,
                    operator=f"baseline:{HAND_DESIGNED if g.space == 'layers' else g.name}")
            for b, g in enumerate(genomes)]


def baselines(p: Plan, returned: list[Genome], skeleton_of) -> list[Genome]:
    """The published cells (in a cells study) and the hand-designed network, its width chosen so
    that its parameters are as near as can be to the median of the returned networks'."""
    from evo_nas.baselines import hand_designed
    from evo_nas.evaluate.count import count

    out = [load_genome(PACKAGED / f"{name}.yaml") for name in PUBLISHED] if p.options.get("space", "cells") == \
        "cells" else []
    sizes = sorted(count(g, skeleton_of(g)).params for g in returned) or [100_000]
    return out + [hand_designed(statistics.median(sizes), skeleton_of)]


# -- what came out ---------------------------------------------------------------------------------

def summarise(p: Plan, searches: list[SearchDone], finals: History):
    from evo_nas.study_stats import summary

    return summary(p, searches, finals)


def journals(study: RunDir) -> list[Path]:
    """Every journal a study's outputs are computed from: its own and its searches'."""
    return [study.journal_file, *sorted((study.path / "searches").glob("*/journal.jsonl"))]


def write(study: RunDir, summary) -> dict[str, Path]:
    """study.csv and study.json (no plotly needed), then study.html."""
    from evo_nas.study_stats import csv_text

    files = {"csv": study.path / "study.csv", "json": study.path / "study.json", "html": study.path / "study.html"}
    atomic_write(files["csv"], csv_text(summary))
    atomic_write(files["json"], json.dumps(_plain(dataclasses.asdict(summary)), indent=2) + "\n")
    from evo_nas.report import protocol_page, shell

    if shell.write(files["html"], lambda: protocol_page.render_page(summary, study.path.name)) is None:
        del files["html"]  # no plotly: the tables are written, the page waits for it
    return files


def load(path: str | Path) -> RunDir:
    """A study directory, checked; its outputs are rewritten from its journals (evonas report)."""
    study = RunDir.open(path)
    if not is_study(study):
        raise RunDirError(f"{study.path}: not an evonas study directory")
    return study


def _plain(value):
    """JSON- and YAML-ready: tuples as lists, paths as text, NaN (an undefined statistic) as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


class _Quiet:
    """The progress hooks, doing nothing (a study run from Python or a test)."""

    def start(self, p): pass  # noqa: E704
    def stage(self, text, planned=None): pass  # noqa: E704
    def done(self, text, seconds): pass  # noqa: E704
    def final_done(self, record): pass  # noqa: E704
    def for_search(self): return None  # noqa: E704
    def stop(self): pass  # noqa: E704
