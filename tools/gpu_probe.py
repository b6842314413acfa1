"""The measurements of `make gpu-check` other than the bench: one part per call, each writing
OUT/probe-<part>.json after every measurement (a timeout keeps what was measured). Every
evaluation's row says which path ran and why (`path`, `why`) and the memory the process held
after it (`memory_reserved`, bytes, CUDA).

    python tools/gpu_probe.py proxy     OUT DEVICE   DARTS-V2 at the device's search proxy, and
                                                    at 2x and 4x its images; n=3 each
    python tools/gpu_probe.py agreement OUT DEVICE   N seeds one at a time vs K in flight: each
                                                    seed's result in both, within a tolerance
                                                    from the seed-to-seed spread
    python tools/gpu_probe.py cudnn     OUT DEVICE   cudnn.benchmark off vs on, DARTS-V2, bf16

DEVICE cpu runs every part at a tiny size (a dry run of the plumbing). Exit code 3: a check
failed (the JSON says which); 0 otherwise.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evo_nas import config as configs  # noqa: E402
from evo_nas.evaluate.data import load_dataset  # noqa: E402
from evo_nas.evaluate.evaluator import EvalSettings, Evaluator  # noqa: E402
from evo_nas.evaluate.inflight import run_in_flight  # noqa: E402
from evo_nas.genome_io import PACKAGED, load_genome  # noqa: E402
from evo_nas.journaled import Request as Task  # noqa: E402
from evo_nas.rng import eval_seed  # noqa: E402

DARTS_V2 = load_genome(PACKAGED / "darts_v2.yaml")
TINY = {"train_limit": 256, "val_limit": 64, "bn_recalibration": 32, "init_channels": 4, "depth": 2,
        "batch_size": 32, "train_images": 64}  # the CPU dry run
# The notes' 88% came from 2 epochs of the 54k split at batch 512 (108k images), 3.5x the preset's
# budget: 4x tells whether the preset's images, not the network, are what falls short.
VARIANTS = (("preset", 1), ("2x images", 2), ("4x images", 4))
# CUDA kernels are not bit-deterministic (cuDNN's backward, atomics), so a seed's result in flight
# and alone differ; how much is unknown before it is measured. A difference of two independent
# draws has sqrt(2) times their standard deviation; beyond Z of those, it is not noise.
Z = 3.0


def settings(device: str, cudnn_benchmark: bool | None = None, **given) -> EvalSettings:
    """The evaluation settings of a search on `device` (its preset proxy), changed by `given`."""
    given = {"seed": 0, "report": False, **(TINY if device == "cpu" else {}), **given}
    cfg = configs.from_mapping(given, "probe", device, data_shape=_shape())
    s = EvalSettings.of(cfg)
    return replace(s, train=replace(s.train, cudnn_benchmark=cudnn_benchmark))


@functools.cache
def _shape():
    dataset = load_dataset("fashion-mnist")
    return dataset.input_shape, dataset.classes


def evaluate(s: EvalSettings, seed: int) -> dict:
    start = time.perf_counter()
    result = Evaluator(s)(Task(seed, DARTS_V2, eval_seed(7, seed), s.train.epochs))
    return row(result, time.perf_counter() - start)


def row(r, seconds: float | None = None) -> dict:
    """One evaluation as the probe reports it: what came out, which path ran and why, memory."""
    why = "" if r.path == "graph" else (r.fallback or ("not CUDA" if r.device == "cpu" else ""))
    return {"seconds": round(seconds if seconds is not None else r.wall_time, 2), "status": str(r.status),
            "accuracy": r.accuracy, "train_loss": r.train_loss, "images_per_s": r.images_per_s, "epochs": r.epochs,
            "path": r.path, "why": why, "memory_reserved": r.memory_reserved, "error": r.error}


class Report:
    def __init__(self, out: str, part: str, device: str):
        self.path = Path(out) / f"probe-{part}.json"
        self.data = {"part": part, "device": device, "torch": torch.__version__, "date": time.strftime("%F %T"),
                     "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")

    def add(self, key: str, value) -> None:
        self.data[key] = value
        self.write()
        print(f"{key}: {json.dumps(value, default=str)}", flush=True)


def proxy(report: Report, device: str, n: int = 3) -> bool:
    """DARTS-V2 at the preset proxy, then at 2x and 4x its images, n seeds each (1 on the CPU):
    accuracy (mean, sd), seconds per evaluation, and what one at a time gives per hour."""
    cuda = device == "cuda"
    if cuda:
        evaluate(settings(device), 99)  # warm-up: data onto the device, CUDA context, kernels
    budget = settings(device).train.train_images
    rows = []
    for name, factor in VARIANTS:
        s = settings(device, train_images=factor * budget)
        rows.append({"variant": name, "train_images": s.train.train_images, "batch_size": s.train.batch_size,
                     "runs": []})
        for seed in range(n if cuda else 1):
            rows[-1]["runs"].append(evaluate(s, seed))
            rows[-1].update(_accuracy_summary(rows[-1]["runs"]))
            report.add("variants", rows)
    report.add("verdict", {row["variant"]: {key: row[key] for key in ("accuracy_mean", "accuracy_sd", "n",
                                                                       "reaches_0.88", "seconds_mean",
                                                                       "evaluations_per_hour_one_at_a_time")}
                           for row in rows})
    return all(r["status"] == "ok" for row in rows for r in row["runs"])


def _accuracy_summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "ok"]
    accuracies = [r["accuracy"] for r in ok]
    seconds = _mean(r["seconds"] for r in ok)
    mean = _mean(accuracies)
    return {"n": len(ok), "accuracy_mean": mean,
            "accuracy_sd": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else None,
            "reaches_0.88": mean is not None and mean >= 0.88, "seconds_mean": seconds,
            "evaluations_per_hour_one_at_a_time": round(3600 / seconds, 1) if seconds else None}


def agreement(report: Report, device: str, n: int = 8, k: int = 4) -> bool:
    """N seeds one at a time, then K in flight (one stream each): throughput of both, memory per
    evaluation, and each seed's accuracy and train loss in both, against a tolerance from the
    spread between the seeds alone; the first seeds alone once more give the run-to-run noise."""
    cuda = device == "cuda"
    n, k = (n, k) if cuda else (2, 2)
    s = settings(device)
    evaluator = Evaluator(s)
    if cuda:
        evaluate(s, 99)  # warm-up: data onto the device, CUDA context, kernels
    tasks = [Task(i, DARTS_V2, eval_seed(1, i), s.train.epochs) for i in range(n)]
    runs = {}
    again = tasks[:2 if cuda else 1]
    for name, width, todo in (("alone", 1, tasks), ("in flight", k, tasks), ("alone again", 1, again)):
        streams = [torch.cuda.Stream() for _ in range(width)] if cuda else [None] * width
        start = time.perf_counter()
        results = run_in_flight(evaluator, todo, streams)
        if cuda:
            torch.cuda.synchronize()
        runs[name] = {"seconds": round(time.perf_counter() - start, 2), "results": results}
        report.add(name, {"in_flight": width, "seconds": runs[name]["seconds"], "evaluations": len(results),
                          "runs": [row(r) for r in results],
                          "max_memory_reserved": torch.cuda.max_memory_reserved() if cuda else None})
    limit = tolerance(runs["alone"]["results"])
    diffs = [_difference(a, b, limit) for a, b in zip(runs["alone"]["results"], runs["in flight"]["results"])]
    noise = [_difference(a, b, limit) for a, b in zip(runs["alone"]["results"], runs["alone again"]["results"])]
    shift = _mean_shift(diffs, limit)
    ok = all(d["within"] for d in diffs) and shift["within"]
    report.add("agreement", {"in_flight_vs_alone": diffs, "alone_vs_alone": noise, "tolerance": limit,
                             "mean_shift": shift})
    report.add("verdict", {"results_agree": ok, "k": k, "n": n,
                           "speedup": round(runs["alone"]["seconds"] / runs["in flight"]["seconds"], 2)})
    return ok


def tolerance(results) -> dict:
    """How far one seed's accuracy and train loss may move between two runs that differ only in
    CUDA's nondeterminism: Z standard deviations of the difference of two seeds' results
    (sqrt(2) times the sd between the seeds alone). A cross-candidate bug (shared memory, RNG,
    a race) shows as a failure, a NaN or a larger difference; a systematic one in mean_shift."""
    ok = [r for r in results if r.ok]
    limit = {"n": len(ok), "z": Z}
    for key in ("accuracy", "train_loss"):
        values = [getattr(r, key) for r in ok]
        sd = statistics.stdev(values) if len(values) > 1 else None
        limit[f"{key}_sd_between_seeds"] = round(sd, 5) if sd is not None else None
        limit[key] = round(Z * math.sqrt(2) * sd, 5) if sd is not None else None
    return limit


def _difference(a, b, limit: dict) -> dict:
    if not (a.ok and b.ok) or limit["accuracy"] is None:
        return {"status": [str(a.status), str(b.status)], "errors": [a.error, b.error], "within": False}
    d_acc, d_loss = a.accuracy - b.accuracy, a.train_loss - b.train_loss
    finite = math.isfinite(a.train_loss) and math.isfinite(b.train_loss)
    return {"d_accuracy": round(d_acc, 4), "d_train_loss": round(d_loss, 4), "finite": finite,
            "within": finite and abs(d_acc) <= limit["accuracy"] and abs(d_loss) <= limit["train_loss"]}


def _mean_shift(diffs: list[dict], limit: dict) -> dict:
    """The mean of the per-seed differences: zero but for noise, whose sd shrinks with sqrt(n);
    a systematic change in flight (every candidate a little worse) shows here first."""
    values = [d["d_accuracy"] for d in diffs if "d_accuracy" in d]
    if not values or limit["accuracy"] is None:
        return {"d_accuracy_mean": None, "bound": None, "within": False}
    bound = limit["accuracy"] / math.sqrt(len(values))
    mean = statistics.fmean(values)
    return {"d_accuracy_mean": round(mean, 5), "bound": round(bound, 5), "within": abs(mean) <= bound}


def cudnn(report: Report, device: str, n: int = 3) -> bool:
    """Training images/s of DARTS-V2 (bf16, the graph path) with cudnn.benchmark off and on,
    alternating, after one warm-up each (autotuning happens there)."""
    if device != "cuda":
        report.add("skipped", "not CUDA: cudnn.benchmark is a CUDA setting")
        return True
    rows = {"off": [], "on": []}
    for flag in (False, True):
        evaluate(settings(device, cudnn_benchmark=flag), 99)
    for i in range(n):
        for name, flag in (("off", False), ("on", True)):
            rows[name].append(evaluate(settings(device, cudnn_benchmark=flag), i))
            report.add("runs", rows)
    rates = {name: [r["images_per_s"] for r in runs if r["images_per_s"]] for name, runs in rows.items()}
    ratio = round(statistics.median(rates["on"]) / statistics.median(rates["off"]), 3) \
        if rates["on"] and rates["off"] else None
    report.add("verdict", {"images_per_s_off": rates["off"], "images_per_s_on": rates["on"], "n": n,
                           "on_over_off_median": ratio})
    return all(r["status"] == "ok" for runs in rows.values() for r in runs)


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


PARTS = {"proxy": proxy, "agreement": agreement, "cudnn": cudnn}

if __name__ == "__main__":
    part, out, device = sys.argv[1], sys.argv[2], sys.argv[3]
    if device == "cuda":
        torch.cuda.set_device(0)
    sys.exit(0 if PARTS[part](Report(out, part, device), device) else 3)
