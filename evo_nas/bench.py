"""`evonas bench`: how fast the evaluator trains candidates, against a plain reference loop.

On the current device, in one run:
1. a fixed set of candidates (NASNet-A and DARTS-V2 at the search-proxy size, plus seeded
   random cells) trained (a) by the evaluator and (b) by a plain reference loop written here
   (DataLoader with CPU flip/crop, fp32, batch 128): images/s, seconds per candidate and the
   ratio, per candidate;
2. throughput with several candidates in flight in one process (one CUDA stream each)
   against one at a time;
3. evaluations per hour at the device's default search proxy, with that proxy's validation
   accuracy for DARTS-V2.
Prints a table and writes bench.json. Small settings on a CPU (so CI runs it), the full
proxy on a GPU. Every figure says its device and n.
"""

from __future__ import annotations

import json
import platform
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from evo_nas import config as configs
from evo_nas import runner
from evo_nas.files import atomic_write
from evo_nas.genome_io import load_genome

GENOMES = Path(__file__).resolve().parents[1] / "genomes"
REFERENCE_LOOP_BATCH = 128  # the reference loop's batch, as in docs/performance.md


@dataclass(frozen=True)
class BenchConfig:
    device: str = "auto"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    random_cells: int = 2  # seeded random cells besides NASNet-A and DARTS-V2
    epochs: float | None = None  # None: the proxy's (GPU: 2) or 1 on the CPU
    train_limit: int | None = None  # None: the proxy's (GPU: the whole split); CPU: 512
    in_flight: tuple[int, ...] = (1, 2, 4)  # candidates in flight per process (CUDA streams)
    loader_workers: int = 4  # reference DataLoader workers, as in docs/performance.md
    seed: int = 0
    out: str = "bench-out"


@dataclass
class BenchResult:
    device: str
    hardware: str
    torch: str
    date: str
    settings: dict
    candidates: list[dict] = field(default_factory=list)  # name, params, macs, evaluator/reference img/s ...
    in_flight: list[dict] = field(default_factory=list)  # k, candidates, seconds, images/s, speedup
    proxy: dict = field(default_factory=dict)  # evaluations/hour, DARTS-V2 accuracy, seconds/eval
    files: list[str] = field(default_factory=list)


def run_bench(cfg: BenchConfig, log=print) -> BenchResult:
    import torch

    from evo_nas.evaluate.devices import available
    from evo_nas.evaluate.evaluator import EvalSettings

    device = available(cfg.device)
    run_cfg = _proxy_config(cfg, device)
    settings = EvalSettings.of(run_cfg)
    genomes = _candidates(cfg, run_cfg)
    result = BenchResult(device=device, hardware=_hardware(device), torch=torch.__version__,
                         date=time.strftime("%Y-%m-%d"), settings=_settings_summary(run_cfg))
    log(f"bench on {result.hardware} (torch {result.torch}); proxy {result.settings}")
    for k, (name, genome) in enumerate(genomes):
        result.candidates.append(_compare(name, genome, settings, cfg, k, log))
    result.in_flight = _in_flight(genomes, settings, cfg, device, log)
    result.proxy = _proxy_rate(result, genomes)
    result.files = _write(result, cfg.out)
    return result


# -- the parts ------------------------------------------------------------------------------

def _proxy_config(cfg: BenchConfig, device: str) -> configs.RunConfig:
    small = device == "cpu"
    given = {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "seed": cfg.seed, "blocks": 5, "cuda_graph": "auto"}
    if small:
        given.update(epochs=1.0, train_limit=512, val_limit=256, bn_recalibration=256)
    given.update({k: v for k, v in (("epochs", cfg.epochs), ("train_limit", cfg.train_limit)) if v is not None})
    probe = configs.from_mapping(given, "bench", device)
    return configs.from_mapping(given, "bench", device, data_shape=runner.dataset_shape(probe))


def _candidates(cfg: BenchConfig, run_cfg: configs.RunConfig) -> list[tuple[str, object]]:
    space = run_cfg.space.make(run_cfg.skeleton)
    rng = random.Random(cfg.seed)
    fixed = [(g.name, g) for g in (load_genome(GENOMES / "nasnet_a.yaml"), load_genome(GENOMES / "darts_v2.yaml"))]
    return fixed + [(f"random-{k}", space.sample(rng)) for k in range(cfg.random_cells)]


def _compare(name: str, genome, settings, cfg: BenchConfig, k: int, log) -> dict:
    from evo_nas.evaluate.evaluator import Evaluator, Task, eval_seed

    evaluator = Evaluator(settings)
    start = time.perf_counter()
    r = evaluator(Task(k, genome, eval_seed(cfg.seed, k), settings.train.epochs))
    seconds = time.perf_counter() - start
    ref = reference_loop(genome, settings, cfg.loader_workers, eval_seed(cfg.seed, k))
    ok = r.ok
    row = {"name": name, "params": r.params, "macs": r.macs, "status": str(r.status), "path": r.path,
           "evaluator_images_per_s": r.images_per_s, "evaluator_seconds": round(seconds, 2),
           "evaluator_accuracy": r.accuracy, "reference_images_per_s": round(ref["images_per_s"], 1),
           "reference_seconds": round(ref["seconds"], 2), "error": r.error or ""}
    row["ratio"] = round(row["evaluator_images_per_s"] / row["reference_images_per_s"], 2) if ok else None
    log(f"  {name:<12} evaluator {row['evaluator_images_per_s']} img/s ({row['path']}), "
        f"reference {row['reference_images_per_s']} img/s, ratio {row['ratio']}")
    return row


def reference_loop(genome, settings, loader_workers: int, seed: int) -> dict:
    """A plain training loop as most NAS code has it: a DataLoader with per-image CPU
    augmentation, fp32, batch 128, host-side loss logging. Same images, same epochs."""
    import torch
    import torch.nn.functional as F

    from evo_nas.build import build
    from evo_nas.evaluate import data as datasets
    from evo_nas.evaluate.engine import scaled_lr

    s = settings
    device = torch.device(s.device)
    dataset = datasets.load_dataset(s.data.dataset, s.data.data_dir)
    train_idx, _ = datasets.proxy_split(len(dataset.y_train), s.data, s.split_seed)
    loader = torch.utils.data.DataLoader(
        _CpuAugmented(dataset, train_idx), batch_size=REFERENCE_LOOP_BATCH, shuffle=True, drop_last=True,
        num_workers=loader_workers if device.type == "cuda" else 0, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    model = build(genome, s.skeleton).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=scaled_lr(s.train.lr, REFERENCE_LOOP_BATCH), momentum=0.9,
                                weight_decay=s.train.weight_decay)
    steps = max(1, int(s.train.epochs * len(loader)))
    images, start, done = 0, time.perf_counter(), 0
    while done < steps:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # the usual per-step logging: a host sync
            images, done = images + len(x), done + 1
            if done >= steps:
                break
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds, "seconds": seconds}


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


def _in_flight(genomes, settings, cfg: BenchConfig, device: str, log) -> list[dict]:
    """All candidates, k at a time in this process: total images/s, and the speedup over k=1."""
    import torch

    from evo_nas.evaluate.evaluator import Evaluator, Task, eval_seed
    from evo_nas.evaluate.inflight import run_in_flight

    evaluator = Evaluator(settings)
    tasks = [Task(k, g, eval_seed(cfg.seed, k), settings.train.epochs) for k, (_, g) in enumerate(genomes)]
    ks = cfg.in_flight if device == "cuda" else (1, 2)
    rows = []
    for k in ks:
        streams = [torch.cuda.Stream() for _ in range(k)] if device == "cuda" else [None] * k
        start = time.perf_counter()
        results = run_in_flight(evaluator, tasks, streams)
        seconds = time.perf_counter() - start
        images = sum(_images(r, settings) for r in results)
        rows.append({"k": k, "candidates": len(tasks), "seconds": round(seconds, 2),
                     "images_per_s": round(images / seconds, 1),
                     "failed": sum(not r.ok for r in results)})
    for row in rows:
        row["speedup"] = round(row["images_per_s"] / rows[0]["images_per_s"], 2)
        log(f"  in flight {row['k']}: {row['images_per_s']} img/s in total, x{row['speedup']} vs one at a time")
    return rows


def _images(result: dict, settings) -> float:
    """Training images a finished evaluation went through (its epochs over the train split)."""
    if not result.ok:
        return 0.0
    return result.epochs * _train_size(settings)


_TRAIN_SIZES: dict = {}


def _train_size(settings) -> int:
    from evo_nas.evaluate.evaluator import resident_data

    key = (settings.data, settings.device)
    if key not in _TRAIN_SIZES:
        train, _ = resident_data(settings.data, settings.split_seed, settings.device)
        _TRAIN_SIZES[key] = len(train)
    return _TRAIN_SIZES[key]


def _proxy_rate(result: BenchResult, genomes) -> dict:
    best = max(result.in_flight, key=lambda r: r["images_per_s"])
    per_eval = best["seconds"] / best["candidates"]
    darts = next((c for c in result.candidates if c["name"] == "DARTS-V2"), {})
    return {"evaluations_per_hour": round(3600 / per_eval, 1), "seconds_per_evaluation": round(per_eval, 2),
            "in_flight": best["k"], "darts_v2_val_accuracy": darts.get("evaluator_accuracy"),
            "n_candidates": best["candidates"]}


def _settings_summary(cfg: configs.RunConfig) -> dict:
    keys = ("init_channels", "depth", "epochs", "batch_size", "train_limit", "val_limit", "lr", "cuda_graph")
    flat = configs.flat(cfg)
    return {"dataset": cfg.data.dataset, **{k: flat[k] for k in keys}}


def _hardware(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name()
    import os

    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def _write(result: BenchResult, out: str) -> list[str]:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.json"
    atomic_write(path, json.dumps(asdict(result), indent=2) + "\n")
    return [str(path)]


def table(result: BenchResult) -> str:
    lines = [f"evonas bench: {result.hardware}, torch {result.torch}, {result.date}",
             f"proxy: {result.settings}", "",
             f"{'candidate':<12} {'params':>9} {'MACs':>11} {'path':>6} {'eval img/s':>11} {'ref img/s':>10} "
             f"{'ratio':>6} {'eval s':>7} {'ref s':>7}"]
    for c in result.candidates:
        lines.append(f"{c['name']:<12} {c['params'] or 0:>9,} {c['macs'] or 0:>11,} {c['path'] or '-':>6} "
                     f"{c['evaluator_images_per_s'] or 0:>11} {c['reference_images_per_s']:>10} "
                     f"{c['ratio'] if c['ratio'] is not None else '-':>6} {c['evaluator_seconds']:>7} "
                     f"{c['reference_seconds']:>7}")
    lines += ["", f"{'in flight':>9} {'img/s total':>12} {'speedup':>8} {'seconds':>8}"]
    lines += [f"{r['k']:>9} {r['images_per_s']:>12} {r['speedup']:>8} {r['seconds']:>8}" for r in result.in_flight]
    p = result.proxy
    lines += ["", f"evaluations per hour at this proxy: {p['evaluations_per_hour']} "
                  f"({p['seconds_per_evaluation']} s each, {p['in_flight']} in flight, n={p['n_candidates']}); "
                  f"DARTS-V2 validation accuracy {p['darts_v2_val_accuracy']}"]
    return "\n".join(lines)


def bench_config(**options) -> BenchConfig:
    values = {k: v for k, v in options.items() if v is not None}
    if "in_flight" in values and isinstance(values["in_flight"], str):
        values["in_flight"] = tuple(int(x) for x in values["in_flight"].split(","))
    return replace(BenchConfig(), **values)
