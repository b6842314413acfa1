"""The measurements of `make gpu-check` that are not the bench: one part per call, each writing
OUT/probe-<part>.json after every measurement (a timeout keeps what was measured).

    python tools/gpu_probe.py proxy     OUT DEVICE   DARTS-V2 at the device's search proxy, and
                                                    at a larger budget and a smaller batch
    python tools/gpu_probe.py agreement OUT DEVICE   N seeds one at a time vs K in flight: each
                                                    seed's result in both, within a tolerance
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
TINY = {"train_limit": 256, "val_limit": 128, "bn_recalibration": 64, "init_channels": 4, "depth": 2,
        "batch_size": 32, "train_images": 96}  # the CPU dry run
# CUDA kernels are not bit-deterministic (cuDNN's backward, atomics), so one seed's result in
# flight and alone differ a little; a cross-candidate bug (shared memory, RNG, a race) shows as
# a NaN, a failure or a large difference. 0.02 is 120 of Fashion-MNIST's 6,000 validation images.
ACCURACY_TOLERANCE, LOSS_TOLERANCE = 0.02, 0.05


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
    r = Evaluator(s)(Task(seed, DARTS_V2, eval_seed(7, seed), s.train.epochs))
    return {"seconds": round(time.perf_counter() - start, 2), "status": str(r.status), "accuracy": r.accuracy,
            "train_loss": r.train_loss, "images_per_s": r.images_per_s, "epochs": r.epochs, "path": r.path,
            "fallback": r.fallback, "error": r.error}


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


def proxy(report: Report, device: str) -> bool:
    """DARTS-V2 at the preset proxy (n=2 seeds), then at twice the images and at batch 256:
    accuracy, images/s, seconds per evaluation, and what one at a time gives per hour."""
    cuda = device == "cuda"
    if cuda:
        evaluate(settings(device), 99)  # warm-up: data onto the device, CUDA context, kernels
    budget = settings(device).train.train_images
    variants = [("preset", {})]
    if cuda:
        variants += [("2x images", {"train_images": 2 * budget}), ("batch 256", {"batch_size": 256})]
    rows = []
    for name, change in variants:
        s = settings(device, **change)
        runs = [evaluate(s, seed) for seed in ((0, 1) if cuda else (0,))]
        ok = [r for r in runs if r["status"] == "ok"]
        rows.append({"variant": name, "train_images": s.train.train_images, "batch_size": s.train.batch_size,
                     "epochs": s.train.epochs, "runs": runs,
                     "accuracy_mean": _mean(r["accuracy"] for r in ok),
                     "seconds_mean": _mean(r["seconds"] for r in ok),
                     "evaluations_per_hour_one_at_a_time": round(3600 / _mean(r["seconds"] for r in ok), 1)
                     if ok else None})
        report.add("variants", rows)
    first = rows[0]
    report.add("verdict", {"darts_v2_accuracy": first["accuracy_mean"], "reaches_0.88": (first["accuracy_mean"] or 0)
                           >= 0.88, "evaluations_per_hour_one_at_a_time": first["evaluations_per_hour_one_at_a_time"],
                           "n": len(first["runs"])})
    return all(r["status"] == "ok" for row in rows for r in row["runs"])


def agreement(report: Report, device: str, n: int = 8, k: int = 4) -> bool:
    """N seeds one at a time, then K in flight (one stream each): throughput of both, and each
    seed's accuracy and train loss in both, beside the spread of two runs alone (the noise)."""
    cuda = device == "cuda"
    n, k = (n, k) if cuda else (2, 2)
    s = settings(device)
    evaluator = Evaluator(s)
    if cuda:
        evaluate(s, 99)  # warm-up: data onto the device, CUDA context, kernels
    tasks = [Task(i, DARTS_V2, eval_seed(1, i), s.train.epochs) for i in range(n)]
    runs = {}
    again = tasks[:2 if cuda else 1]  # the noise: the first seeds alone once more
    for name, width, todo in (("alone", 1, tasks), ("in flight", k, tasks), ("alone again", 1, again)):
        streams = [torch.cuda.Stream() for _ in range(width)] if device == "cuda" else [None] * width
        start = time.perf_counter()
        results = run_in_flight(evaluator, todo, streams)
        if device == "cuda":
            torch.cuda.synchronize()
        runs[name] = {"seconds": round(time.perf_counter() - start, 2), "results": results}
        report.add(name, {"in_flight": width, "seconds": runs[name]["seconds"], "evaluations": len(results),
                          "failed": [r.error for r in results if not r.ok],
                          "paths": sorted({str(r.path) for r in results})})
    diffs = [_difference(a, b) for a, b in zip(runs["alone"]["results"], runs["in flight"]["results"])]
    noise = [_difference(a, b) for a, b in zip(runs["alone"]["results"], runs["alone again"]["results"])]
    ok = all(d["within"] for d in diffs)
    report.add("agreement", {"in_flight_vs_alone": diffs, "alone_vs_alone": noise,
                             "tolerance": {"accuracy": ACCURACY_TOLERANCE, "train_loss": LOSS_TOLERANCE}})
    report.add("verdict", {"results_agree": ok, "k": k, "n": n,
                           "speedup": round(runs["alone"]["seconds"] / runs["in flight"]["seconds"], 2)})
    return ok


def _difference(a, b) -> dict:
    if not (a.ok and b.ok):
        return {"status": [str(a.status), str(b.status)], "errors": [a.error, b.error], "within": False}
    d_acc, d_loss = abs(a.accuracy - b.accuracy), abs(a.train_loss - b.train_loss)
    finite = math.isfinite(a.train_loss) and math.isfinite(b.train_loss)
    return {"d_accuracy": round(d_acc, 4), "d_train_loss": round(d_loss, 4), "finite": finite,
            "within": finite and d_acc <= ACCURACY_TOLERANCE and d_loss <= LOSS_TOLERANCE}


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
