"""`evonas fidelity`: does a proxy rank architectures? Each genome is trained at the run's proxy and
at a reference fidelity, each with several seeds; repeatability, validity and cost come out
(docs/fidelity.md). It is a run: its trainings go through the journaled evaluator, so it
journals, locks and resumes as a search does.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from evo_nas import backends, runner
from evo_nas import config as configs
from evo_nas.config import FidelityConfig, RunConfig
from evo_nas.errors import ConfigError, Interrupted
from evo_nas.files import atomic_write
from evo_nas.genome import Genome
from evo_nas.genome_io import load_genome
from evo_nas.journaled import Journaled, Request
from evo_nas.progress import line
from evo_nas.records import PROXY, History, Record
from evo_nas.rng import derive_seed, eval_seed
from evo_nas.spaces import parse_genome
from evo_nas.stats import Tau, kendall_tau, tau_with_interval
from evo_nas.store import RunDir

REFERENCE = "reference"  # the fidelity of a reference training's journal line (the proxy's: records.PROXY)


# -- what a measurement found ----------------------------------------------------------------

@dataclass(frozen=True)
class Variance:
    within_genome: float  # mean over genomes of the variance over seeds
    binomial_validation: float | None  # what the validation set's size alone explains of it
    share_from_validation_size: float | None
    between_genomes: float  # variance of the genomes' means
    validation_images: int | None


@dataclass(frozen=True)
class Spread:
    mean: float
    max: float


@dataclass(frozen=True)
class AtFidelity:
    """Seed against seed at one fidelity, the spread per genome, and the cost of one evaluation."""

    evaluation_seconds: float | None
    repeatability: Tau | None = None
    tau_all_pairs: float | None = None  # mean tau over every pair of seeds (more than 2 seeds)
    sd_per_genome: Spread | None = None
    variance: Variance | None = None


@dataclass(frozen=True)
class Measurement:
    """What fidelity.json holds."""

    genomes: int
    usable: int  # genomes every training of which succeeded
    repeats: int
    failed: int
    proxy: AtFidelity
    reference: AtFidelity
    rows: list[dict]
    settings: dict
    validity: Tau | None = None  # proxy (mean over seeds) against reference
    noise_ceiling: float | None = None  # the reference's own repeatability
    predictors: dict[str, Tau] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = _plain(dataclasses.asdict(self))
        for name in ("proxy", "reference"):
            part = out[name]
            pairs = part.pop("tau_all_pairs")
            if part["repeatability"] is not None:
                part["repeatability"]["tau_all_pairs"] = pairs
            out[name] = {k: v for k, v in part.items() if v is not None or k == "evaluation_seconds"}
        return {k: v for k, v in out.items() if v is not None and not (k == "predictors" and not v)}

    @classmethod
    def from_json(cls, d: dict) -> Measurement:
        def at(part: dict) -> AtFidelity:
            r = dict(part.get("repeatability") or {})
            pairs = r.pop("tau_all_pairs", None)
            sd, var = part.get("sd_per_genome"), part.get("variance")
            return AtFidelity(part.get("evaluation_seconds"), Tau(**r) if r else None, pairs,
                              Spread(**sd) if sd else None, Variance(**var) if var else None)

        return cls(d["genomes"], d["usable"], d["repeats"], d["failed"], at(d["proxy"]), at(d.get("reference", {})),
                   d["rows"], d["settings"], Tau(**d["validity"]) if d.get("validity") else None,
                   d.get("noise_ceiling"), {k: Tau(**v) for k, v in (d.get("predictors") or {}).items()})


def _plain(value):
    """JSON-ready: NaN (an undefined tau) as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# -- starting and resuming --------------------------------------------------------------------

def start(options: dict, fid: FidelityConfig, log=print) -> RunDir:
    """A new fidelity measurement, with the settings of `evonas run` for the proxy."""
    options = {"repeats": 2, "name": time.strftime(f"fidelity-{options.get('space', 'cells')}-%Y%m%d-%H%M%S"),
               **options}
    cfg = runner.plan(options)
    if cfg.search.repeats < 2:
        raise ConfigError("repeats: seed-against-seed needs at least 2 trainings per genome")
    genomes = choose_genomes(cfg, fid)
    reference = reference_config(cfg, fid, runner.dataset_size(cfg))
    meta = {"kind": "fidelity", "seed": cfg.seed, "objectives": list(cfg.search.objectives), "versions":
            runner.versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "reference_point": runner.reference_point(cfg, cfg.space.make(cfg.skeleton), genomes),
            "fidelity": dataclasses.asdict(fid), "reference": configs.to_dict(reference),
            "genomes": [g.to_dict() for g in genomes], "results_config": configs.results_part(cfg)}
    run = RunDir.create(Path(cfg.run.runs_dir) / cfg.run.name, configs.to_dict(cfg), meta)
    with run.locked():
        measure(run, cfg, reference, genomes, log)
    return run


def resume(run: RunDir, log=print) -> RunDir:
    meta = run.meta()
    with run.locked():
        run.check_writable()
        cfg = configs.from_mapping(run.config(), str(run.config_file), run.config()["backend"]["device"])
        reference = configs.from_mapping(meta["reference"], str(run.meta_file), cfg.device)
        genomes = [parse_genome(g, f"{run.meta_file}: genome {i}") for i, g in enumerate(meta["genomes"])]
        measure(run, cfg, reference, genomes, log)
    return run


def is_fidelity_run(run: RunDir) -> bool:
    return run.meta().get("kind") == "fidelity"


def choose_genomes(cfg: RunConfig, fid: FidelityConfig) -> list[Genome]:
    """The genomes to measure: files, a run's front, or distinct ones sampled from the space."""
    space = cfg.space.make(cfg.skeleton)
    if fid.genome_files:
        genomes = [load_genome(path) for path in fid.genome_files]
        for path, genome in zip(fid.genome_files, genomes):
            space.validate(genome, path)
    elif fid.from_run:
        genomes = [r.genome for r in RunDir.open(fid.from_run).history().front(cfg.search.objectives)]
    else:
        rng, genomes, keys = random.Random(derive_seed(cfg.seed, "fidelity")), [], set()
        for _ in range(100 * fid.genomes):
            genome = space.sample(rng)
            if space.key(genome) not in keys:
                keys.add(space.key(genome))
                genomes.append(genome)
            if len(genomes) == fid.genomes:
                break
    if len(genomes) < 4:
        raise ConfigError(f"a ranking needs at least 4 genomes, got {len(genomes)}")
    return genomes


def reference_config(cfg: RunConfig, fid: FidelityConfig, train_split: int) -> RunConfig:
    """The reference fidelity: reference_factor times the proxy's training images (more of the
    split first, then more epochs once the split is used up) and a larger validation set."""
    images = (cfg.data.train_limit or train_split) * fid.reference_factor
    limit = min(int(images), train_split)
    epochs = cfg.train.epochs * images / limit
    data = dataclasses.replace(cfg.data, train_limit=limit, val_limit=fid.reference_val)
    return dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, epochs=round(epochs, 6)))


# -- measuring -----------------------------------------------------------------------------------

def measure(run: RunDir, cfg: RunConfig, reference: RunConfig, genomes: list[Genome], log) -> Measurement:
    """Train what the journal does not hold yet (proxy first, then reference), then analyse."""
    from evo_nas.evaluate.evaluator import EvalSettings, Evaluator

    journal, started = run.history(repair=True), time.monotonic()
    space = cfg.space.make(cfg.skeleton)
    fidelities = [PROXY, REFERENCE] if run.meta()["fidelity"].get("reference", True) else [PROXY]
    evaluators = {PROXY: Evaluator(EvalSettings.of(cfg)), REFERENCE: Evaluator(EvalSettings.of(reference))}
    history, total = History(), len(fidelities) * len(genomes) * cfg.search.repeats
    replay = [_current(r) for r in journal.records + journal.others]
    backend = backends.make(cfg.backend, cfg.train.time_limit)
    journaled = Journaled(run, backend, evaluators, history, replay, on_record=lambda r: log(line(
        len(history) + len(history.others), total, time.monotonic() - started,
        f"{r.fidelity or 'proxy'} genome {r.id} seed {r.repeat}: {_said(r)}", len(replay))))
    try:
        for fidelity in fidelities:
            journaled.evaluate([Request(i, genomes[i], eval_seed(cfg.seed, i, r), key=space.key(genomes[i]), repeat=r,
                                        fidelity=fidelity, operator="fidelity")
                                for i in range(len(genomes)) for r in range(cfg.search.repeats)])
    except KeyboardInterrupt as stop:
        raise Interrupted(f"the journal is on disk: continue with `evonas resume {run.path}`",
                          getattr(stop, "signum", 2)) from None
    finally:
        backend.close()
    measurement = analyse(history, genomes, cfg, reference, naswot_scores(cfg, genomes))
    write(run, measurement)
    return measurement


def _current(record: Record) -> Record:
    """A journal line as this version writes it: earlier versions put the reference at rung 1."""
    if record.fidelity is PROXY and record.rung == 1:
        return dataclasses.replace(record, rung=0, fidelity=REFERENCE)
    return record


def _said(record: Record) -> str:
    return f"accuracy {record.accuracy:.4f}" if record.ok else f"{record.status}: {record.error}"


def naswot_scores(cfg: RunConfig, genomes: list[Genome]) -> list[float]:
    """Each genome's NASWOT score in the proxy skeleton, on the first training images."""
    import torch

    from evo_nas.build import build
    from evo_nas.evaluate.zero_cost import naswot, naswot_images

    images = naswot_images(cfg)
    scores = []
    for i, genome in enumerate(genomes):
        torch.manual_seed(eval_seed(cfg.seed, i))
        scores.append(naswot(build(genome, cfg.skeleton), images))
    return scores


# -- the statistics --------------------------------------------------------------------------------

def analyse(history: History, genomes: list[Genome], cfg: RunConfig, reference: RunConfig,
            scores: list[float]) -> Measurement:
    """Repeatability at each fidelity, the proxy's validity against the reference (with the
    reference's own repeatability as its ceiling), free predictors, and cost."""
    runs = {(r.id, r.fidelity, r.repeat): r for r in history.records + history.others}
    repeats = cfg.search.repeats
    measured = sorted({f for (_, f, _) in runs}, key=str)
    usable = [i for i in range(len(genomes))
              if all((i, f, r) in runs and runs[(i, f, r)].ok for f in measured for r in range(repeats))]
    acc = {f: [[runs[(i, f, r)].accuracy for r in range(repeats)] for i in usable] for f in measured}
    means = {f: [statistics.fmean(a) for a in acc[f]] for f in acc}
    first = [runs[(i, PROXY, 0)] for i in usable]
    validity = {}
    if len(usable) >= 4 and REFERENCE in acc:
        target = means[REFERENCE]

        def tau(values):
            return tau_with_interval(values, target, seed=cfg.seed)

        validity = {"validity": tau(means[PROXY]), "predictors": {
            "params": tau([r.params for r in first]), "macs": tau([r.macs for r in first]),
            "naswot": tau([scores[i] for i in usable]), "proxy_single_seed": tau([a[0] for a in acc[PROXY]])}}
    at = {f: at_fidelity(acc.get(f, []), runs, f, cfg) for f in (PROXY, REFERENCE)}
    rows = [{"id": i, "genome": genomes[i].describe(), "params": first[k].params, "macs": first[k].macs,
             "naswot": scores[i], "proxy": acc[PROXY][k], "proxy_mean": means[PROXY][k],
             "reference": acc[REFERENCE][k] if REFERENCE in acc else [],
             "reference_mean": means[REFERENCE][k] if REFERENCE in acc else None} for k, i in enumerate(usable)]
    return Measurement(len(genomes), len(usable), repeats, len(genomes) - len(usable), at[PROXY], at[REFERENCE], rows,
                       _settings(cfg, reference), noise_ceiling=at[REFERENCE].repeatability.tau
                       if validity and at[REFERENCE].repeatability else None, **validity)


def _settings(cfg: RunConfig, reference: RunConfig) -> dict:
    return {"proxy_train_images": cfg.data.train_limit, "proxy_val_images": cfg.data.val_limit,
            "reference_train_images": reference.data.train_limit, "reference_val_images": reference.data.val_limit,
            "epochs": cfg.train.epochs, "reference_epochs": reference.train.epochs, "space": cfg.space.space,
            "init_channels": cfg.skeleton.init_channels, "depth": cfg.skeleton.depth, "device": cfg.device,
            "cpu_threads": cfg.backend.cpu_threads}


def at_fidelity(acc: list[list[float]], runs: dict, fidelity: str | None, cfg: RunConfig) -> AtFidelity:
    """Seed against seed at one fidelity, the spread per genome, what the validation set's size
    explains of it, and the cost of one evaluation."""
    seconds = _seconds(runs, fidelity)
    if len(acc) < 4:
        return AtFidelity(seconds)
    pairs = [(a, b) for a in range(len(acc[0])) for b in range(a + 1, len(acc[0]))]
    sds = [statistics.stdev(x) for x in acc]
    within = statistics.fmean(statistics.variance(x) for x in acc)
    val = _val_images(runs, fidelity)
    binomial = statistics.fmean(statistics.fmean(x) * (1 - statistics.fmean(x)) for x in acc) / val if val else None
    variance = Variance(within, binomial, min(1.0, binomial / within) if binomial and within else None,
                        statistics.variance([statistics.fmean(x) for x in acc]), val)
    return AtFidelity(seconds, tau_with_interval([x[0] for x in acc], [x[1] for x in acc], seed=cfg.seed),
                      statistics.fmean(kendall_tau([x[a] for x in acc], [x[b] for x in acc]) for a, b in pairs),
                      Spread(statistics.fmean(sds), max(sds)), variance)


def _seconds(runs: dict, fidelity: str | None) -> float | None:
    times = [r.wall_time for (_, f, _), r in runs.items() if f == fidelity and r.wall_time is not None]
    return round(statistics.fmean(times), 2) if times else None


def _val_images(runs: dict, fidelity: str | None) -> int | None:
    """How many validation images the accuracies were measured on: a multiple of 1/n."""
    values = sorted({r.accuracy for (_, f, _), r in runs.items() if f == fidelity and r.ok and 0 < r.accuracy < 1})
    for n in range(1, 100_001):  # the smallest n for which every accuracy is k/n
        if all(abs(v * n - round(v * n)) < 1e-6 for v in values):
            return n
    return None


# -- writing ---------------------------------------------------------------------------------------

def write(run: RunDir, measurement: Measurement) -> list[Path]:
    """fidelity.csv and .json, then the page (skipped with a warning where plotly is missing)."""
    from evo_nas.report import fidelity_page, shell

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    repeats = measurement.repeats
    writer.writerow(["id", "params", "macs", "naswot", *[f"proxy_{r}" for r in range(repeats)], "proxy_mean",
                     *[f"reference_{r}" for r in range(repeats)], "reference_mean", "genome"])
    for row in measurement.rows:
        writer.writerow([row["id"], row["params"], row["macs"], row["naswot"], *row["proxy"], row["proxy_mean"],
                         *(row["reference"] or [""] * repeats), row["reference_mean"], row["genome"]])
    files = [run.path / "fidelity.csv", run.path / "fidelity.json", run.path / "fidelity.html"]
    summary = measurement.to_json()
    atomic_write(files[0], buffer.getvalue())
    atomic_write(files[1], json.dumps(summary, indent=2) + "\n")
    page = shell.write(files[2], lambda: fidelity_page.render_page(run.path.name, summary, lines(summary)))
    return files[:2] + [page] * (page is not None)


def lines(summary: dict) -> list[str]:
    """A measurement (fidelity.json's content) as a few lines for the terminal."""
    m = Measurement.from_json(summary)
    out = [f"{m.usable} of {m.genomes} genomes, {m.repeats} seeds each"]
    for name, f in (("proxy", m.proxy), ("reference", m.reference)):
        if f.repeatability is None:
            continue
        share = f.variance.share_from_validation_size
        out.append(f"{name:<9} seed vs seed tau {f.repeatability.text()}" + (
            f"  rho {f.repeatability.rho:+.2f}  sd per genome {f.sd_per_genome.mean:.4f}  validation-size share "
            f"{share:.0%}  {f.evaluation_seconds} s/evaluation" if share is not None else ""))
    if m.validity is not None:
        out.append(f"validity  proxy vs reference tau {m.validity.text()} (ceiling: reference seed vs seed "
                   f"{m.noise_ceiling:+.2f})")
        out += [f"predictor {name:<18} vs reference tau {t.text()}" for name, t in m.predictors.items()]
    return out
