"""`evonas fidelity`: does a proxy rank architectures? Each genome is trained at the run's proxy and
at a reference fidelity, each with several seeds; repeatability, validity and cost come out
(docs/fidelity.md). It is a run: journal and resume as for a search.
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
from dataclasses import dataclass
from pathlib import Path

from evo_nas import backends, runner
from evo_nas import config as configs
from evo_nas.config import RunConfig
from evo_nas.errors import ConfigError, Interrupted
from evo_nas.files import atomic_write
from evo_nas.genome import Genome
from evo_nas.genome_io import load_genome
from evo_nas.records import History, Record
from evo_nas.rng import derive_seed
from evo_nas.spaces import parse_genome
from evo_nas.stats import kendall_tau, tau_with_interval
from evo_nas.store import RunDir

PROXY, REFERENCE = 0, 1  # the rung of a journal line: which fidelity it measured


@dataclass(frozen=True)
class FidelityConfig:
    genomes: int = 16  # genomes sampled from the space (unless from_run or genome_files say which)
    from_run: str | None = None  # the Pareto front of this run
    genome_files: tuple[str, ...] = ()  # these genome files
    reference_factor: float = 10.0  # the reference trains on this many times the proxy's images
    reference_val: int | None = 5000  # and validates on this many images (None: the whole split)
    reference: bool = True  # False: the proxy's repeatability only (a quick first look)

    def __post_init__(self):
        if self.genomes < 4 or self.genomes > 1000:
            raise ConfigError(f"genomes: a ranking needs 4 to 1000 genomes, got {self.genomes}")
        if self.reference_factor < 1:
            raise ConfigError(f"reference_factor: must be at least 1, got {self.reference_factor}")
        if self.reference_val is not None and self.reference_val < 1:
            raise ConfigError(f"reference_val: must be positive, got {self.reference_val}")


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
            runner.versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "reference_point": {},
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

def measure(run: RunDir, cfg: RunConfig, reference: RunConfig, genomes: list[Genome], log) -> dict:
    """Train what the journal does not hold yet (proxy first, then reference), then analyse."""
    from evo_nas.evaluate.evaluator import EvalSettings, Evaluator, Task, eval_seed

    history = run.history(repair=True)
    done = {(r.id, r.rung, r.repeat) for r in history.records}
    space = cfg.space.make(cfg.skeleton)
    backend = backends.make(cfg.backend, cfg.train.time_limit)
    try:
        fidelities = [(PROXY, EvalSettings.of(cfg)), (REFERENCE, EvalSettings.of(reference))]
        for rung, settings in fidelities[:2 if run.meta()["fidelity"].get("reference", True) else 1]:
            todo = [(i, r) for i in range(len(genomes)) for r in range(cfg.search.repeats)
                    if (i, rung, r) not in done]
            tasks = [Task(i, genomes[i], eval_seed(cfg.seed, i, r), settings.train.epochs, rung) for i, r in todo]
            for k, result in backend.map(Evaluator(settings), tasks):
                i, r = todo[k]
                record = Record(i, 0, genomes[i], space.key(genomes[i]), result, rung, operator="fidelity",
                                finished=time.strftime("%Y-%m-%dT%H:%M:%S"), repeat=r)
                run.append(record)
                history.add(record)
                log(f"{('proxy', 'reference')[rung]} {len(history.records)}/{2 * len(genomes) * cfg.search.repeats}"
                    f"  genome {i} seed {r}: {_said(result)}")
    except KeyboardInterrupt as stop:
        raise Interrupted(f"the journal is on disk: continue with `evonas resume {run.path}`",
                          getattr(stop, "signum", 2)) from None
    finally:
        backend.close()
    summary = analyse(history, genomes, cfg, reference, naswot_scores(cfg, genomes))
    write(run, summary)
    return summary


def _said(result) -> str:
    return f"accuracy {result.accuracy:.4f}" if result.ok else f"{result.status}: {result.error}"


def naswot_scores(cfg: RunConfig, genomes: list[Genome]) -> list[float]:
    """Each genome's NASWOT score in the proxy skeleton, on the first training images."""
    import torch

    from evo_nas.build import build
    from evo_nas.evaluate.evaluator import eval_seed
    from evo_nas.evaluate.zero_cost import naswot, naswot_images

    images = naswot_images(cfg)
    scores = []
    for i, genome in enumerate(genomes):
        torch.manual_seed(eval_seed(cfg.seed, i))
        scores.append(naswot(build(genome, cfg.skeleton), images))
    return scores


# -- the statistics --------------------------------------------------------------------------------

def analyse(history: History, genomes: list[Genome], cfg: RunConfig, reference: RunConfig,
            scores: list[float]) -> dict:
    """Repeatability at each fidelity, the proxy's validity against the reference (with the
    reference's own repeatability as its ceiling), free predictors, and cost."""
    runs = {(r.id, r.rung, r.repeat): r for r in history.records}
    repeats = cfg.search.repeats
    measured = sorted({f for (_, f, _) in runs})
    usable = [i for i in range(len(genomes))
              if all((i, f, r) in runs and runs[(i, f, r)].ok for f in measured for r in range(repeats))]
    acc = {f: [[runs[(i, f, r)].accuracy for r in range(repeats)] for i in usable] for f in (PROXY, REFERENCE)
           if f in measured}
    means = {f: [statistics.fmean(a) for a in acc[f]] for f in acc}
    summary = {"genomes": len(genomes), "usable": len(usable), "repeats": repeats, "failed": len(genomes) - len(usable),
               "proxy": _fidelity(acc[PROXY], runs, PROXY, cfg),
               "reference": _fidelity(acc.get(REFERENCE, []), runs, REFERENCE, reference)}
    if len(usable) >= 4 and REFERENCE in acc:
        target = means[REFERENCE]
        summary["validity"] = tau_with_interval(means[PROXY], target, seed=cfg.seed)
        summary["noise_ceiling"] = summary["reference"]["repeatability"]["tau"]
        summary["predictors"] = {
            "params": tau_with_interval([first_of(runs, i).params for i in usable], target, seed=cfg.seed),
            "macs": tau_with_interval([first_of(runs, i).macs for i in usable], target, seed=cfg.seed),
            "naswot": tau_with_interval([scores[i] for i in usable], target, seed=cfg.seed),
            "proxy_single_seed": tau_with_interval([a[0] for a in acc[PROXY]], target, seed=cfg.seed)}
    summary["rows"] = [{"id": i, "genome": genomes[i].describe(), "params": first_of(runs, i).params,
                        "macs": first_of(runs, i).macs, "naswot": scores[i], "proxy": acc[PROXY][k],
                        "proxy_mean": means[PROXY][k], "reference": acc.get(REFERENCE, [[]] * len(usable))[k],
                        "reference_mean": means.get(REFERENCE, [None] * len(usable))[k]} for k, i in enumerate(usable)]
    summary["settings"] = {"proxy_train_images": cfg.data.train_limit, "proxy_val_images": cfg.data.val_limit,
                           "reference_train_images": reference.data.train_limit,
                           "reference_val_images": reference.data.val_limit, "epochs": cfg.train.epochs,
                           "reference_epochs": reference.train.epochs, "space": cfg.space.space,
                           "init_channels": cfg.skeleton.init_channels, "depth": cfg.skeleton.depth,
                           "device": cfg.device, "cpu_threads": cfg.backend.cpu_threads}
    return summary


def first_of(runs: dict, i: int) -> Record:
    return runs[(i, PROXY, 0)]


def _fidelity(acc: list[list[float]], runs: dict, rung: int, cfg: RunConfig) -> dict:
    """Seed against seed at one fidelity, the spread per genome, what the validation set's size
    explains of it, and the cost of one evaluation."""
    out: dict = {"evaluation_seconds": _seconds(runs, rung)}
    if len(acc) < 4:
        return out
    pairs = [(a, b) for a in range(len(acc[0])) for b in range(a + 1, len(acc[0]))]
    out["repeatability"] = tau_with_interval([x[0] for x in acc], [x[1] for x in acc], seed=cfg.seed)
    out["repeatability"]["tau_all_pairs"] = statistics.fmean(
        kendall_tau([x[a] for x in acc], [x[b] for x in acc]) for a, b in pairs)
    sds = [statistics.stdev(x) for x in acc]
    out["sd_per_genome"] = {"mean": statistics.fmean(sds), "max": max(sds)}
    within = statistics.fmean(statistics.variance(x) for x in acc)
    val = _val_images(runs, rung)
    binomial = statistics.fmean(statistics.fmean(x) * (1 - statistics.fmean(x)) for x in acc) / val if val else None
    out["variance"] = {"within_genome": within, "binomial_validation": binomial,
                       "share_from_validation_size": min(1.0, binomial / within) if binomial and within else None,
                       "between_genomes": statistics.variance([statistics.fmean(x) for x in acc]),
                       "validation_images": val}
    return out


def _seconds(runs: dict, rung: int) -> float | None:
    times = [r.wall_time for (_, f, _), r in runs.items() if f == rung and r.wall_time is not None]
    return round(statistics.fmean(times), 2) if times else None


def _val_images(runs: dict, rung: int) -> int | None:
    """How many validation images the accuracies were measured on: a multiple of 1/n."""
    values = sorted({r.accuracy for (_, f, _), r in runs.items() if f == rung and r.ok and 0 < r.accuracy < 1})
    for n in range(1, 100_001):  # the smallest n for which every accuracy is k/n
        if all(abs(v * n - round(v * n)) < 1e-6 for v in values):
            return n
    return None


# -- writing ---------------------------------------------------------------------------------------

def write(run: RunDir, summary: dict) -> list[Path]:
    from evo_nas.report.fidelity_page import render

    rows = summary["rows"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    repeats = summary["repeats"]
    writer.writerow(["id", "params", "macs", "naswot", *[f"proxy_{r}" for r in range(repeats)], "proxy_mean",
                     *[f"reference_{r}" for r in range(repeats)], "reference_mean", "genome"])
    for row in rows:
        writer.writerow([row["id"], row["params"], row["macs"], row["naswot"], *row["proxy"], row["proxy_mean"],
                         *(row["reference"] or [""] * repeats), row["reference_mean"], row["genome"]])
    files = [run.path / "fidelity.csv", run.path / "fidelity.json", run.path / "fidelity.html"]
    atomic_write(files[0], buffer.getvalue())
    atomic_write(files[1], json.dumps(_json_ready(summary), indent=2) + "\n")
    atomic_write(files[2], render(summary, run.path.name))
    return files


def _json_ready(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def lines(summary: dict) -> list[str]:
    """The summary as a few lines for the terminal."""
    def tau(d):
        return f"{d['tau']:+.2f} [{d['tau_low']:+.2f}, {d['tau_high']:+.2f}]" if d else "-"

    s = summary
    out = [f"{s['usable']} of {s['genomes']} genomes, {s['repeats']} seeds each"]
    for name in ("proxy", "reference"):
        f = s[name]
        if "repeatability" in f:
            share = f["variance"]["share_from_validation_size"]
            out.append(f"{name:<9} seed vs seed tau {tau(f['repeatability'])}  rho {f['repeatability']['rho']:+.2f}  "
                       f"sd per genome {f['sd_per_genome']['mean']:.4f}  validation-size share "
                       f"{share:.0%}  {f['evaluation_seconds']} s/evaluation" if share is not None else
                       f"{name:<9} seed vs seed tau {tau(f['repeatability'])}")
    if "validity" in s:
        out.append(f"validity  proxy vs reference tau {tau(s['validity'])} (ceiling: reference seed vs seed "
                   f"{s['noise_ceiling']:+.2f})")
        out += [f"predictor {name:<18} vs reference tau {tau(d)}" for name, d in s["predictors"].items()]
    return out

