"""evonas bench: small on the CPU, but every part runs and the numbers hang together; steady
state from finishing times; Ctrl-C keeps what was measured; on CUDA at tiny size."""

import json

import pytest
import torch
from click.testing import CliRunner

from evo_nas import bench
from evo_nas.cli import cli, main
from evo_nas.errors import Interrupted

TINY = ["--quick", "--random-cells", "0", "--train-limit", "128", "--epochs", "0.5", "--measurements", "2"]


@pytest.mark.slow
def test_bench_runs_small_on_a_cpu(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", "--device", "cpu", *TINY, "--in-flight", "1,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench.json").read_text())
    assert data["device"] == "cpu" and "CPU" in data["hardware"] and data["measurements"] == 2 and data["quick"]
    assert [c["name"] for c in data["candidates"]] == ["NASNet-A", "DARTS-V2"]
    for c in data["candidates"]:
        ev, ref = c["evaluator"]["whole_images_per_s"], c["reference"]["whole_images_per_s"]
        assert c["failed"] == 0 and ev["n"] == ref["n"] == 2 and ev["min"] <= ev["median"] <= ev["max"]
        assert c["ratio"] == {"steady": None, "whole": round(ev["median"] / ref["median"], 2)}  # 1 step: no steady
        assert c["paths"] == ["eager"] and c["fallbacks"] == [] and c["batch_size"] == 64
    assert [(r["k"], r["tasks"], len(r["measurements"])) for r in data["in_flight"]] == [(1, 3, 2), (2, 6, 2)]
    assert data["in_flight"][0]["speedup"] == 1.0 and all(r["failed"] == 0 for r in data["in_flight"])
    for m in (m for r in data["in_flight"] for m in r["measurements"]):
        assert 0 < m["fill_seconds"] <= m["seconds"] and m["steady_evaluations_per_hour"] > 0
        assert m["paths"] == ["eager"] and len(m["accuracies"]) in (3, 6)
    proxy = data["proxy"]
    assert proxy["evaluations_per_hour"]["n"] == 2 and proxy["darts_v2_val_accuracy"]["n"] == 2 * 3 + 2 * 6
    assert "evaluations per hour at this proxy" in result.output and data["stopped"] is None


def test_steady_state_counts_the_evaluations_while_every_slot_is_busy():
    # 2 in flight, 6 evaluations of 10 s each, in pairs: results at 10, 10, 20, 20, 30, 30 s.
    # From the first result (10 s) to the 5th (30 s) four finish: 4 in 20 s = 720 an hour.
    rates = bench.steady_state([10, 10.5, 20, 20.5, 30, 30.5], [100.0] * 6, k=2)
    assert rates == {"steady_evaluations_per_hour": 720.0, "steady_images_per_s": 20.0}
    assert bench.steady_state([5, 10, 15], [1.0] * 3, k=1)["steady_evaluations_per_hour"] == 720.0
    assert bench.steady_state([3.0], [1.0], k=1)["steady_evaluations_per_hour"] is None  # nothing in between


def test_spread_is_median_min_max_and_n():
    assert bench.spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert bench.spread([]) == {"median": None, "min": None, "max": None, "n": 0}


@pytest.mark.slow
def test_an_interrupted_bench_keeps_what_it_measured(tmp_path):
    def stop_at_in_flight(line):
        if "in flight 1, 1/" in line:
            raise KeyboardInterrupt

    cfg = bench.bench_config(device="cpu", quick=True, random_cells=0, train_limit=128, epochs=0.5, measurements=1,
                             in_flight="1,2", reference=False, out=str(tmp_path))
    with pytest.raises(Interrupted, match="what was measured is in"):
        bench.run_bench(cfg, log=stop_at_in_flight)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["stopped"] == "stopped during the measurement with 1 in flight"
    assert [c["name"] for c in data["candidates"]] == ["NASNet-A", "DARTS-V2"]
    assert data["candidates"][0]["reference"]["whole_images_per_s"]["n"] == 0  # --no-reference
    assert len(data["in_flight"][0]["measurements"]) == 1  # written before the line that stopped it


@pytest.mark.parametrize("value", ["0", "1,x"])
def test_bad_in_flight_is_one_line_and_exit_2(value, capsys, tmp_path):
    assert main(["bench", "--device", "cpu", "--in-flight", value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bench: in_flight:" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_runs_tiny_on_cuda(tmp_path):
    cfg = bench.bench_config(device="cuda", quick=True, random_cells=0, train_limit=2048, train_images=8192,
                             measurements=1, in_flight="1,2", out=str(tmp_path))
    result = bench.run_bench(cfg, log=lambda line: None)
    assert [(c["paths"], c["fallbacks"]) for c in result.candidates] == [(["graph"], [])] * 2
    assert all(c["ratio"]["steady"] > 0 and c["ratio"]["whole"] > 0 for c in result.candidates)
    assert all(r["failed"] == 0 and r["steady_evaluations_per_hour"]["median"] for r in result.in_flight)
    assert json.loads((tmp_path / "bench.json").read_text())["device"] == "cuda"


def test_the_reference_loop_takes_a_split_smaller_than_its_batch():
    from evo_nas.evaluate.evaluator import EvalSettings

    cfg = bench._defaults(bench.BenchConfig(device="cpu", train_limit=64, epochs=0.5), "cpu")
    settings = EvalSettings.of(bench._proxy_config(cfg, "cpu"))
    ref = bench.reference_loop(bench._darts_v2(), settings, 0, seed=0)
    assert ref["steps"] == 1 and ref["batch_size"] == 64  # one batch of all 64 images, not an endless loop
    assert ref["whole_images_per_s"] > 0 and ref["steady_images_per_s"] is None  # too short for a steady part


@pytest.mark.slow
def test_both_loops_are_timed_steady_and_whole_at_the_same_batch():
    from evo_nas.evaluate.evaluator import EvalSettings, Evaluator
    from evo_nas.journaled import Request as Task

    cfg = bench._defaults(bench.BenchConfig(device="cpu", train_limit=768, epochs=1.0), "cpu")
    settings = EvalSettings.of(bench._proxy_config(cfg, "cpu"))
    run = bench.timed_evaluation(Evaluator(settings), Task(0, bench._darts_v2(), 0, settings.train.epochs), settings)
    ref = bench.reference_loop(bench._darts_v2(), settings, 0, seed=0)
    assert run["result"].ok and run["images"] == ref["steps"] * ref["batch_size"] == 768  # 12 steps of 64
    assert bench.steady_from(settings, 12) == 5 and bench.steady_from(settings, 10) is None
    assert run["steady_images_per_s"] > 0 and ref["steady_images_per_s"] > 0 and ref["whole_images_per_s"] > 0
