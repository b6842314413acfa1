"""`evonas bench`: how fast the evaluator trains candidates, against a plain reference loop, and
how many evaluations an hour it gives with several candidates in flight.

On the current device, in one process, after one evaluation that warms the process up:
1. per candidate (NASNet-A, DARTS-V2, seeded random cells): the evaluator and a plain reference
   loop (DataLoader with CPU flip/crop, fp32, the evaluator's batch) train it at the proxy;
   images/s of each, steady (after the warm-up and capture, or the loader's start-up) and over
   the whole evaluation, median of n measurements with its spread, and their ratios; which path ran;
2. steady state with k candidates in flight (one CUDA stream each): per measurement 3k
   evaluations of DARTS-V2 with different seeds; evaluations/hour and images/s while every
   slot is busy, apart from the fill-up before the first result and the drain after the last
   full round; n measurements per k;
3. evaluations per hour at this proxy (the best k) and DARTS-V2's validation accuracy there.
bench.json in --out is rewritten after every measurement, so Ctrl-C or SIGTERM keep what was
measured. --quick (the default on a CPU, minutes on 2 cores) skips the random cells,
caps the reference loop at REFERENCE_QUICK_STEPS and, on a CPU, shrinks the proxy. Every
figure says its device and n.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from evo_nas import config as configs
from evo_nas import runner
from evo_nas.config import BenchCommand
from evo_nas.errors import Interrupted
from evo_nas.files import atomic_write
from evo_nas.genome_io import PACKAGED as GENOMES
from evo_nas.genome_io import load_genome

REFERENCE_SKIP = 5  # reference steps before its clock starts: DataLoader workers start up then
REFERENCE_QUICK_STEPS = 100  # --quick: the reference loop's rate from this many steps at most
TASKS_PER_SLOT = 3  # a steady-state measurement with k in flight runs this many x k evaluations
# The CPU's proxies: small enough for a bench in minutes on 2 cores (quick: about one).
CPU_PROXY = {"train_limit": 512, "val_limit": 256, "bn_recalibration": 256, "epochs": 1.0}
CPU_QUICK_PROXY = {"train_limit": 512, "val_limit": 256, "bn_recalibration": 128, "epochs": 0.5, "init_channels": 4,
                   "depth": 2}


@dataclass(frozen=True)
class BenchConfig(BenchCommand):
    """A bench: its own settings (config.BenchCommand) and the run settings it takes."""

    device: str = "auto"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    epochs: float | None = None  # None: the proxy's
    train_images: int | None = None  # None: the proxy's (GPU: the preset's image budget)
    train_limit: int | None = None
    seed: int = 0


RUN_SETTINGS = ("device", "dataset", "data_dir", "epochs", "train_images", "train_limit", "seed")  # bench's options


@dataclass
class BenchResult:
    device: str
    hardware: str
    torch: str
    date: str
    settings: dict
    quick: bool
    measurements: int
    warnings: list[str] = field(default_factory=list)
    warmup_seconds: float | None = None  # the first evaluation in the process (data to the device, ...)
    candidates: list[dict] = field(default_factory=list)  # name, params, macs, evaluator/reference summaries
    in_flight: list[dict] = field(default_factory=list)  # k, tasks, per-measurement rows, their summaries
    proxy: dict = field(default_factory=dict)  # evaluations/hour at the best k, DARTS-V2 accuracy
    stopped: str | None = None  # what was running when Ctrl-C or SIGTERM came
    files: list[str] = field(default_factory=list)


def run_bench(cfg: BenchConfig, log=print) -> BenchResult:
    """Measure, writing bench.json after every measurement; Ctrl-C/SIGTERM: write, raise Interrupted."""
    import torch

    from evo_nas.evaluate.devices import available
    from evo_nas.evaluate.evaluator import EvalSettings

    device = available(cfg.device)
    cfg = _defaults(cfg, device)
    run_cfg = _proxy_config(cfg, device)
    settings = EvalSettings.of(run_cfg)
    result = BenchResult(device=device, hardware=_hardware(device), torch=torch.__version__,
                         date=time.strftime("%Y-%m-%d"), settings=_settings_summary(run_cfg, cfg), quick=cfg.quick,
                         measurements=cfg.measurements, files=[str(Path(cfg.out) / "bench.json")])
    log(f"bench on {result.hardware} (torch {result.torch}), {'quick' if cfg.quick else 'full'}, n={cfg.measurements}; "
        f"proxy {result.settings}")
    if device == "cpu" and cfg.quick:
        log("expected duration: a few minutes on 2 idle CPU cores (n=3), more on a busy machine")
    phase = "the warm-up"
    try:
        _note_busy(result, log)
        result.warmup_seconds = _warm_up(settings, cfg)
        for k, (name, genome) in enumerate(_candidates(cfg, run_cfg)):
            phase = f"the comparison of {name}"
            result.candidates.append(_compare(name, genome, settings, cfg, k, log))
            _write(result, cfg.out)
        for k in cfg.in_flight:
            phase = f"the measurement with {k} in flight"
            result.in_flight.append({"k": k, "tasks": TASKS_PER_SLOT * k, "measurements": []})
            for r in range(cfg.measurements):
                _measure_in_flight(result.in_flight[-1], r, settings, cfg, device, result, log)
        _note_busy(result, log)
    except KeyboardInterrupt as stop:
        result.stopped = f"stopped during {phase}"
        _write(result, cfg.out)
        raise Interrupted(f"what was measured is in {result.files[0]}", getattr(stop, "signum", 2)) from None
    _write(result, cfg.out)
    return result


# -- settings ---------------------------------------------------------------------------------

def _defaults(cfg: BenchConfig, device: str) -> BenchConfig:
    quick = device == "cpu" if cfg.quick is None else cfg.quick
    cells = cfg.random_cells if cfg.random_cells is not None else (0 if quick else 2)
    ks = cfg.in_flight or ((1, 2, 4) if device == "cuda" else (1, 2))
    return replace(cfg, quick=quick, random_cells=cells, in_flight=tuple(ks))


def _proxy_config(cfg: BenchConfig, device: str) -> configs.RunConfig:
    given = {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "seed": cfg.seed, "blocks": 5, "cuda_graph": "auto"}
    if device == "cpu":
        given.update(CPU_QUICK_PROXY if cfg.quick else CPU_PROXY)
    mine = (("epochs", cfg.epochs), ("train_images", cfg.train_images), ("train_limit", cfg.train_limit))
    given.update({k: v for k, v in mine if v is not None})
    if cfg.train_images is not None:
        given.pop("epochs", None)  # an image budget asked for: given epochs would turn it off
    probe = configs.from_mapping(given, "bench", device)
    return configs.from_mapping(given, "bench", device, data_shape=runner.dataset_shape(probe))


def _candidates(cfg: BenchConfig, run_cfg: configs.RunConfig) -> list[tuple[str, object]]:
    space = run_cfg.space.make(run_cfg.skeleton)
    rng = random.Random(cfg.seed)
    fixed = [(g.name, g) for g in (load_genome(GENOMES / "nasnet_a.yaml"), load_genome(GENOMES / "darts_v2.yaml"))]
    return fixed + [(f"random-{k}", space.sample(rng)) for k in range(cfg.random_cells)]


def _darts_v2():
    return load_genome(GENOMES / "darts_v2.yaml")


# -- measurements -----------------------------------------------------------------------------

def _warm_up(settings, cfg: BenchConfig) -> float:
    """One evaluation, not counted: data onto the device, CUDA context, kernels loaded."""
    from evo_nas.evaluate.evaluator import Evaluator
    from evo_nas.journaled import Request as Task
    from evo_nas.rng import eval_seed

    start = time.perf_counter()
    Evaluator(settings)(Task(-1, _darts_v2(), eval_seed(cfg.seed, 10_000), settings.train.epochs))
    return round(time.perf_counter() - start, 2)


def _compare(name: str, genome, settings, cfg: BenchConfig, k: int, log) -> dict:
    """The evaluator and the reference loop on one candidate, each `measurements` times, alternating."""
    from evo_nas.evaluate.evaluator import Evaluator
    from evo_nas.journaled import Request as Task
    from evo_nas.rng import eval_seed

    evaluator = Evaluator(settings)
    runs, refs = [], []
    for r in range(cfg.measurements):
        seed = eval_seed(cfg.seed, 100 * k + r)
        runs.append(timed_evaluation(evaluator, Task(k, genome, seed, settings.train.epochs), settings))
        if cfg.reference:
            steps = REFERENCE_QUICK_STEPS if cfg.quick else None
            refs.append(reference_loop(genome, settings, cfg.loader_workers, seed, steps))
    row = _compare_row(name, runs, refs, settings)
    ev, ref = row["evaluator"], row["reference"]
    log(f"  {name:<12} evaluator {_median(ev['steady_images_per_s'])} img/s steady, "
        f"{_median(ev['whole_images_per_s'])} whole ({'+'.join(row['paths'])}), reference "
        f"{_median(ref['steady_images_per_s'])} steady, {_median(ref['whole_images_per_s'])} whole; ratios "
        f"{row['ratio']} (batch {row['batch_size']}, n={cfg.measurements})")
    return row


def _compare_row(name: str, runs: list[dict], refs: list[dict], settings) -> dict:
    """The evaluator's and the reference loop's rates side by side, at the same batch size:
    steady (from step steady_from on) and whole (training images over the whole call's seconds)."""
    ok = [run for run in runs if run["result"].ok]
    first = runs[0]["result"]
    images = _proxy_images(settings)
    evaluator = {"steady_images_per_s": spread(run["steady_images_per_s"] for run in ok),
                 "whole_images_per_s": spread(run["images"] / run["seconds"] for run in ok),
                 "images_per_s": spread(run["result"].images_per_s for run in ok),  # its own: warm-up, capture in
                 "seconds": spread(run["seconds"] for run in ok),
                 "accuracy": spread(run["result"].accuracy for run in ok),
                 "setup_share": spread(_setup_share(run["result"], settings) for run in ok)}
    reference = {"steady_images_per_s": spread(x["steady_images_per_s"] for x in refs),
                 "whole_images_per_s": spread(x["whole_images_per_s"] for x in refs),
                 "seconds": spread(x["seconds"] for x in refs), "steps": refs[0]["steps"] if refs else None}
    failed = [run["result"].error for run in runs if not run["result"].ok]
    return {"name": name, "params": first.params, "macs": first.macs, "batch_size": _batch(settings),
            "proxy_images": images, "path": ok[0]["result"].path if ok else None,
            "paths": sorted({str(run["result"].path) for run in ok}),
            "fallbacks": sorted({run["result"].fallback for run in ok if run["result"].fallback}),
            "failed": len(failed), "error": failed[0] if failed else "", "evaluator": evaluator,
            "reference": reference, "ratio": {kind: _ratio(evaluator[f"{kind}_images_per_s"],
                                                           reference[f"{kind}_images_per_s"])
                                              for kind in ("steady", "whole")}}


def timed_evaluation(evaluator, task, settings) -> dict:
    """One evaluation driven step by step: its Result, its seconds, the images it trained on,
    and its steady rate, timed
    from the end of step steady_from (warm-up and capture done) to the end of the last training
    step, with the device synced at both ends (None where the training is too short for it)."""
    import torch

    sync = torch.cuda.synchronize if settings.device.startswith("cuda") else (lambda: None)
    steps, marks, skip, total, start = evaluator.begin(task), {}, None, 0, time.perf_counter()
    while True:
        try:
            done, total = next(steps)
        except StopIteration as end:
            result = end.value
            break
        skip = steady_from(settings, total)
        if skip is not None and done in (skip, total):
            sync()
            marks[done] = time.perf_counter()
    seconds = time.perf_counter() - start
    steady = None
    if skip is not None and len(marks) == 2 and marks[total] > marks[skip]:
        steady = round((total - skip) * _batch(settings) / (marks[total] - marks[skip]), 1)
    return {"result": result, "seconds": seconds, "images": total * _batch(settings), "steady_images_per_s": steady}


def steady_from(settings, steps: int) -> int | None:
    """The step from which both loops are timed as steady: the evaluator has warmed up and
    captured its graph, the reference loop's DataLoader workers have started. None where that
    leaves fewer steps than it skips."""
    skip = max(REFERENCE_SKIP, settings.train.warmup_steps_before_capture + 1)
    return skip if steps > 2 * skip else None


def _setup_share(result, settings) -> float:
    """Share of an evaluation's wall time outside its training steps: building, counting,
    BN recalibration, validation (warm-up steps and capture count as training)."""
    train_seconds = result.epochs * _train_size(settings) / max(result.images_per_s, 1e-9)
    return min(1.0, max(0.0, 1 - train_seconds / max(result.wall_time, 1e-9)))


def reference_loop(genome, settings, loader_workers: int, seed: int, max_steps: int | None = None) -> dict:
    """A plain training loop as most NAS code has it: a DataLoader with per-image CPU
    augmentation, fp32, host-side loss logging, at the evaluator's batch size. The proxy's
    images (at most max_steps steps); its steady rate counts from step steady_from on, after
    the workers started; its whole rate from the call's start (model built, workers started)."""
    import torch
    import torch.nn.functional as F

    from evo_nas.build import build
    from evo_nas.evaluate import data as datasets
    from evo_nas.evaluate.engine import scaled_lr

    s, device = settings, torch.device(settings.device)
    dataset = datasets.cached_dataset(s.data.dataset, s.data.data_dir, s.skeleton.classes)
    train_idx = datasets.part_indices(dataset, s.data, s.split_seed, "train")  # the evaluator's own split
    start = time.perf_counter()  # the data in memory, as an evaluator's worker has them
    batch = min(s.train.batch_size, len(train_idx))  # a split smaller than a batch: one batch of it all
    loader = torch.utils.data.DataLoader(
        _CpuAugmented(dataset, train_idx), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=loader_workers if device.type == "cuda" else 0, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    model = build(genome, s.skeleton).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=scaled_lr(s.train.lr, batch), momentum=0.9,
                                weight_decay=s.train.weight_decay)
    steps = max(1, round(_proxy_images(settings) / batch))
    steps = min(steps, max_steps) if max_steps else steps
    skip = steady_from(settings, steps)
    done, clock = 0, None
    while done < steps:
        for x, y in loader:
            if done == skip:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                clock = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # the usual per-step logging: a host sync
            done += 1
            if done >= steps:
                break
    end = time.perf_counter()  # the last loss.item() synced
    return {"steady_images_per_s": round((steps - skip) * batch / (end - clock), 1) if clock else None,
            "whole_images_per_s": round(steps * batch / (end - start), 1), "seconds": round(end - start, 2),
            "steps": steps, "batch_size": batch}


class _CpuAugmented:
    """Per-image random crop (zero padding) and flip on the CPU, then normalise: the usual
    torchvision-style pipeline, written with torch ops."""

    def __init__(self, dataset, indices):
        import torch

        from evo_nas.evaluate.device_data import default_pad

        self.x = dataset.x_train[indices]
        self.y = dataset.y_train[indices]
        self.flip = dataset.flip
        self.pad = default_pad(self.x.shape[1])
        self.mean = torch.tensor(dataset.mean).view(-1, 1, 1)
        self.std = torch.tensor(dataset.std).view(-1, 1, 1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        import torch
        import torch.nn.functional as F

        img = torch.from_numpy(self.x[i]).permute(2, 0, 1).float() / 255
        h, w = img.shape[1:]
        img = F.pad(img, (self.pad,) * 4)
        top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        img = img[:, top:top + h, left:left + w]
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(2)
        return (img - self.mean) / self.std, int(self.y[i])


def _measure_in_flight(row: dict, r: int, settings, cfg: BenchConfig, device: str, result: BenchResult,
                       log) -> None:
    """Measurement r of `row` (k in flight), its summaries updated, bench.json rewritten."""
    k = row["k"]
    m = _one_in_flight(k, r, settings, cfg, device)
    row["measurements"].append(m)
    row.update(_in_flight_summary(row["measurements"]))
    for each in result.in_flight:  # against the first k's steady rate (k = 1 unless told otherwise)
        each["speedup"] = _ratio(each["steady_images_per_s"], result.in_flight[0]["steady_images_per_s"])
    result.proxy = _proxy_rate(result)
    _write(result, cfg.out)
    log(f"  in flight {k}, {r + 1}/{cfg.measurements}: {row['tasks']} evaluations in {m['seconds']} s; steady "
        f"{m['steady_evaluations_per_hour']} evaluations/h, {m['steady_images_per_s']} img/s; "
        f"first result after {m['fill_seconds']} s")


def _one_in_flight(k: int, r: int, settings, cfg: BenchConfig, device: str) -> dict:
    import torch

    from evo_nas.evaluate.evaluator import Evaluator
    from evo_nas.evaluate.inflight import run_in_flight
    from evo_nas.journaled import Request as Task
    from evo_nas.rng import eval_seed

    genome, n = _darts_v2(), TASKS_PER_SLOT * k
    tasks = [Task(j, genome, eval_seed(cfg.seed, 1000 * k + 100 * r + j), settings.train.epochs) for j in range(n)]
    streams = [torch.cuda.Stream() for _ in range(k)] if device == "cuda" else [None] * k
    finished: list[tuple[float, object]] = []
    start = time.perf_counter()
    run_in_flight(Evaluator(settings), tasks, streams, lambda i, res: finished.append((time.perf_counter(), res)))
    seconds = time.perf_counter() - start
    times = [t - start for t, _ in finished]
    images = [_images(res, settings) for _, res in finished]
    rates = steady_state(times, images, k)
    results = [res for _, res in finished]
    return {"seconds": round(seconds, 2), "evaluations_per_hour": round(3600 * n / seconds, 1), **rates,
            "fill_seconds": round(times[0], 2), "drain_seconds": round(seconds - times[n - k], 2),
            "failed": sum(not res.ok for res in results), "paths": sorted({str(res.path) for res in results}),
            "fallbacks": sorted({res.fallback for res in results if res.fallback}),
            "memory_reserved": max((res.memory_reserved or 0 for res in results), default=0) or None,
            "accuracies": [res.accuracy for res in results if res.ok]}


def steady_state(times: list[float], images: list[float], k: int) -> dict:
    """Rates while all k slots are busy, from finishing times (ascending, n >= k + 1) and each
    finished evaluation's training images: from the first result to the (n-k+1)-th, the last
    before the slots start to empty, n-k evaluations finish. Before the first the slots fill
    up (every candidate's setup at once); after, they drain."""
    last = len(times) - k
    window = times[last] - times[0]
    if last < 1 or window <= 0:
        return {"steady_evaluations_per_hour": None, "steady_images_per_s": None}
    return {"steady_evaluations_per_hour": round(3600 * last / window, 1),
            "steady_images_per_s": round(sum(images[1:last + 1]) / window, 1)}


def _in_flight_summary(measurements: list[dict]) -> dict:
    keys = ("steady_evaluations_per_hour", "steady_images_per_s", "evaluations_per_hour", "fill_seconds")
    out = {key: spread(m[key] for m in measurements) for key in keys}
    out["failed"] = sum(m["failed"] for m in measurements)
    return out


def _images(result, settings) -> float:
    """Training images a finished evaluation went through (its epochs over the train split)."""
    return result.epochs * _train_size(settings) if result.ok else 0.0


def _proxy_images(settings) -> float:
    train = settings.train
    if train.train_images is not None:
        return train.train_images
    return train.epochs * _train_size(settings)


def _train_size(settings) -> int:
    from evo_nas.evaluate import data as datasets

    dataset = datasets.cached_dataset(settings.data.dataset, settings.data.data_dir, settings.skeleton.classes)
    return len(datasets.part_indices(dataset, settings.data, settings.split_seed, "train"))


def _batch(settings) -> int:
    """Images per training step (a split smaller than the batch is one batch of it all)."""
    return min(settings.train.batch_size, _train_size(settings))


def _proxy_rate(result: BenchResult) -> dict:
    rows = [r for r in result.in_flight if _median(r.get("steady_evaluations_per_hour")) is not None]
    if not rows:
        return {}
    best = max(rows, key=lambda r: _median(r["steady_evaluations_per_hour"]))
    accuracies = [a for r in result.in_flight for m in r["measurements"] for a in m["accuracies"]]
    return {"evaluations_per_hour": best["steady_evaluations_per_hour"], "in_flight": best["k"],
            "darts_v2_val_accuracy": spread(accuracies)}


# -- small helpers ------------------------------------------------------------------------------

def spread(values) -> dict:
    """Median, min, max and n of the values that are not None."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(values), 4), "min": round(values[0], 4), "max": round(values[-1], 4),
            "n": len(values)}


def _median(summary: dict | None):
    return None if not summary else summary.get("median")


def _ratio(a: dict, b: dict) -> float | None:
    if _median(a) is None or not _median(b):
        return None
    return round(_median(a) / _median(b), 2)


def _note_busy(result: BenchResult, log) -> None:
    """Warn when other work shares the machine: load average above the core count."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cores:
        note = f"the machine is busy (load average {load:.1f} on {cores} cores): rates are lower than alone"
        result.warnings.append(note)
        log(f"  warning: {note}")


def _settings_summary(cfg: configs.RunConfig, bench: BenchConfig) -> dict:
    keys = ("init_channels", "depth", "epochs", "train_images", "batch_size", "train_limit", "val_limit", "lr",
            "cuda_graph", "cudnn_benchmark")
    flat = configs.flat(cfg)
    return {"dataset": cfg.data.dataset, **{k: flat.get(k) for k in keys}}


def _hardware(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def _write(result: BenchResult, out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "bench.json", json.dumps(asdict(result), indent=2) + "\n")


def table(result: BenchResult) -> str:
    lines = [f"evonas bench: {result.hardware}, torch {result.torch}, {result.date}, n={result.measurements} per row "
             f"(median, min-max)", f"proxy: {result.settings}", ""]
    lines += [f"{'candidate':<12} {'params':>9} {'MACs':>11} {'path':>6} {'batch':>5}  {'img/s':<6} "
              f"{'evaluator':>24} {'reference':>24} {'ratio':>6}"]
    for c in result.candidates:
        for kind in ("steady", "whole"):
            head = (f"{c['name']:<12} {c['params'] or 0:>9,} {c['macs'] or 0:>11,} {c['path'] or '-':>6} "
                    f"{c['batch_size']:>5}" if kind == "steady" else " " * 50)
            ratio = c["ratio"][kind] if c["ratio"][kind] is not None else "-"
            lines.append(f"{head}  {kind:<6} {_show(c['evaluator'][f'{kind}_images_per_s']):>24} "
                         f"{_show(c['reference'][f'{kind}_images_per_s']):>24} {ratio:>6}")
    lines += ["", f"{'in flight':>9} {'steady evaluations/h':>26} {'steady img/s':>24} {'speedup':>8} "
                  f"{'first result s':>16}"]
    lines += [f"{r['k']:>9} {_show(r['steady_evaluations_per_hour']):>26} {_show(r['steady_images_per_s']):>24} "
              f"{r['speedup'] if r['speedup'] is not None else '-':>8} {_show(r['fill_seconds']):>16}"
              for r in result.in_flight]
    p = result.proxy
    if p:
        lines += ["", f"evaluations per hour at this proxy: {_show(p['evaluations_per_hour'])} with "
                      f"{p['in_flight']} in flight; DARTS-V2 validation accuracy {_show(p['darts_v2_val_accuracy'])}"]
    lines += [f"warning: {w}" for w in result.warnings]
    if result.stopped:
        lines.append(f"incomplete: {result.stopped}")
    return "\n".join(lines)


def _show(summary: dict | None) -> str:
    if not summary or summary.get("median") is None:
        return "-"
    if summary["n"] == 1:
        return f"{summary['median']:g}"
    return f"{summary['median']:g} ({summary['min']:g}-{summary['max']:g})"


def bench_config(**options) -> BenchConfig:
    """A BenchConfig from the command's options (None: not given), each checked as its setting's."""
    given = {k: v for k, v in options.items() if v is not None}
    own = configs.group_from(BenchCommand, {k: given.pop(k) for k in list(given) if k not in RUN_SETTINGS}, "bench")
    run = configs.coerced(given, "bench")
    return BenchConfig(**{f.name: getattr(own, f.name) for f in fields(BenchCommand)}, **run)
