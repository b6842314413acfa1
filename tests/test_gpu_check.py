"""tools/gpu_check.sh, the one command for a GPU visit, in its DEVICE=cpu dry run: every step
runs at a tiny size and says how it went in summary.json; a failing or hung step is recorded
and the rest go on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["env", "probe-proxy", "probe-agreement", "tests-collect", "probe-cudnn", "search", "fidelity", "bench"]


def gpu_check(out: Path, timeout: float = 900, **env) -> dict:
    run = subprocess.run(["bash", "tools/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "DEVICE": "cpu", "PY": sys.executable, "OUT": str(out),
                              "WHL_DIR": str(out / "no-wheels"), **env})
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    for step in summary["steps"]:
        assert json.loads((out / "steps" / f"{step['step']}.json").read_text()) == step
    return summary


@pytest.mark.slow
def test_the_dry_run_runs_every_step(tmp_path):
    summary = gpu_check(tmp_path, TOTAL_S="850")
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == STEPS and summary["device"] == "cpu"
    bad = {name: s for name, s in steps.items() if s["status"] != "ok"}
    assert not bad, {name: (tmp_path / s["log"]).read_text()[-1500:] for name, s in bad.items()}
    fidelity = json.loads((tmp_path / "fidelity.json").read_text())
    assert fidelity["usable"] == 4 and fidelity["proxy"]["repeatability"]["n"] == 4
    assert fidelity["reference"]["evaluation_seconds"] is None  # --no-reference: the proxy alone
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["cuda_available"] is False and env["api"]["CUDAGraph.capture_begin(pool, capture_error_mode)"]
    agreement = json.loads((tmp_path / "probe-agreement.json").read_text())
    assert agreement["verdict"]["results_agree"]  # on the CPU in flight and alone agree bit for bit
    assert all(d["d_accuracy"] == 0 for d in agreement["agreement"]["in_flight_vs_alone"])
    proxy = json.loads((tmp_path / "probe-proxy.json").read_text())
    assert proxy["variants"][0]["runs"][0]["status"] == "ok"
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert bench["stopped"] is None and [r["k"] for r in bench["in_flight"]] == [1, 2]
    search = json.loads((tmp_path / "search_summary.json").read_text())
    assert search["evaluations"] == 4 and search["status"] == {"ok": 4}
    assert (tmp_path / "tests-collect.xml").is_file()


def test_a_failing_step_is_recorded_and_the_rest_go_on(tmp_path):
    summary = gpu_check(tmp_path, STEPS="search,env", SEARCH_ARGS="--population 0")
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["search"]["status"] == "failed" and steps["search"]["rc"] == 2
    assert "population" in (tmp_path / "search.log").read_text()
    assert steps["env"]["status"] == "ok"


def test_a_step_past_its_time_is_stopped_and_recorded(tmp_path):
    endless = ("--workers 1 --population 2 --generations 100000 --epochs 0.5 --train-limit 64 --val-limit 32 "
               "--init-channels 4 --depth 2 --batch-size 32 --bn-recalibration 32")
    summary = gpu_check(tmp_path, STEPS="search,bench", SEARCH_ARGS=endless, TOTAL_S="25", timeout=120)
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["search"]["status"] == "timeout" and steps["search"]["rc"] == 124
    assert steps["bench"]["status"] == "skipped" and "budget" in steps["bench"]["note"]
