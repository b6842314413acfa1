"""tools/gpu_check.sh, the one command for a GPU visit, in its DEVICE=cpu dry run under the GPU
machine's constraints: what it lacks (deap and its parts) comes from a folder of wheels, plotly
does not import, there is no `make`, the time budget is the visit's, and what it leaves in OUT
passes the device tool's limits on what comes back (at most 8 files of at most 16 MiB, at most
two folders deep, names of letters, digits, '.', '_' and '-'), with every step's result inside."""

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["env", "tests", "probe-proxy", "bench", "probe-agreement", "probe-cudnn", "search", "resume"]
CARRIED = ["deap", "moocore", "cffi", "pycparser", "platformdirs"]  # what the GPU machine lacks
# The GPU machine has no plotly and none of CARRIED; a sitecustomize makes this Python alike:
# these modules are looked for only outside its own site-packages (in the wheels' folder).
SHIM = """
import importlib.machinery, site, sys

HIDDEN = {"plotly", "_plotly_utils", "deap", "moocore", "cffi", "_cffi_backend", "pycparser", "platformdirs"}
OWN = set(site.getsitepackages()) | {site.getusersitepackages()}


class Elsewhere:
    def find_spec(self, name, path=None, target=None):
        if path is not None or name not in HIDDEN:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if p not in OWN])
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (as on the GPU machine)", name=name)
        return spec


sys.meta_path.insert(0, Elsewhere())
"""
LIMITS = {"files": 8, "bytes": 16 * 2**20, "folders": 2}
NAME = re.compile(r"[A-Za-z0-9._-]+")


def wheel_of(dist: str, folder: Path) -> Path:
    """A wheel of the installed distribution `dist`, repacked from its files (CI has no internet)."""
    d = importlib.metadata.distribution(dist)
    tag = next(line.split(":", 1)[1].strip() for line in d.read_text("WHEEL").splitlines() if line.startswith("Tag:"))
    path = folder / f"{d.metadata['Name'].replace('-', '_')}-{d.version}-{tag}.whl"
    record = next(f for f in d.files if f.name == "RECORD" and f.parent.name.endswith(".dist-info"))
    rows = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in d.files:
            source = Path(d.locate_file(f))
            if f == record or f.parts[0] == ".." or "__pycache__" in f.parts or not source.is_file():
                continue
            data = source.read_bytes()
            archive.writestr(f.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{f.as_posix()},sha256={digest},{len(data)}")
        archive.writestr(record.as_posix(), "\n".join([*rows, f"{record.as_posix()},,"]) + "\n")
    return path


def gpu_check(tmp: Path, timeout: float = 900, **env) -> tuple[int, dict, tarfile.TarFile]:
    """Run the dry run as on the GPU machine (SHIM, wheels, no make): its rc, summary.json and
    the archive."""
    shim, bin_dir, whl = tmp / "shim", tmp / "bin", tmp / "whl"
    for folder in (shim, bin_dir, whl):
        folder.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    (bin_dir / "make").write_text(f"#!/bin/sh\necho \"make $*\" >> {tmp / 'make-was-called'}\nexit 127\n")
    (bin_dir / "make").chmod(0o755)
    for dist in [*CARRIED, "pytest"]:  # pytest: the machine has it, so it must stay out
        wheel_of(dist, whl)
    out = tmp / "out"
    run = subprocess.run(["bash", "tools/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "DEVICE": "cpu", "PY": sys.executable, "OUT": str(out), "WHL_DIR": str(whl),
                              "TMPDIR": str(tmp), "PYTHONPATH": str(shim), "PATH": f"{bin_dir}:{os.environ['PATH']}",
                              **env})
    assert not (tmp / "make-was-called").exists()
    assert (out / "summary.json").is_file(), run.stdout[-3000:] + run.stderr[-2000:]
    return run.returncode, json.loads((out / "summary.json").read_text()), tarfile.open(out / "gpu-check.tar.gz")


def within_the_device_limits(out: Path) -> None:
    paths = list(out.rglob("*"))
    files = [p for p in paths if p.is_file()]
    assert len(files) <= LIMITS["files"] and all(p.is_file() or p.is_dir() for p in paths)
    for p in files:
        parts = p.relative_to(out).parts
        assert len(parts) - 1 <= LIMITS["folders"] and all(NAME.fullmatch(part) for part in parts), p
        assert p.stat().st_size <= LIMITS["bytes"], p


def read(archive: tarfile.TarFile, name: str) -> str:
    return archive.extractfile(f"./{name}").read().decode()


@pytest.mark.slow
def test_the_dry_run_of_a_visit_runs_every_step_and_brings_every_figure_home(tmp_path):
    rc, summary, archive = gpu_check(tmp_path)
    out = tmp_path / "out"
    within_the_device_limits(out)
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "env.json", "gpu-check.tar.gz",
                                                     "probe-agreement.json", "probe-cudnn.json", "probe-proxy.json",
                                                     "search.json", "summary.json"]
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == STEPS and summary["device"] == "cpu" and summary["budget_s"] == 520
    bad = {name: read(archive, s["log"])[-1500:] for name, s in steps.items() if s["status"] != "ok"}
    assert not bad and rc == 0 and summary["ok"], bad or summary
    assert summary["seconds"] <= summary["budget_s"] and summary["off_path"] == []
    assert summary["evaluations_measured"] >= 10 and summary["expected_path"] == "eager"
    names = set(archive.getnames())
    for step in STEPS:  # every step's log and record travel in the archive
        assert {f"./{step}.log", f"./steps/{step}.json"} <= names
        assert json.loads(read(archive, f"steps/{step}.json")) == steps[step]
    assert {"./tests.xml", "./pip.log", "./steps.log", "./nvidia-smi.txt", "./runs/gpu-search/journal.jsonl",
            "./runs/gpu-search/history.csv", "./bench/bench.json"} <= names and not any("/site/" in n for n in names)

    # the wheels: what the machine lacks came from the folder; pytest, which it has, did not
    env = json.loads((out / "env.json").read_text())
    assert env["plotly"].startswith("MISSING") and env["python"] == sys.version.split()[0]
    assert all(str(tmp_path) in env["paths"][name] for name in ("deap", "moocore", "cffi"))
    assert str(tmp_path) not in env["paths"]["pytest"]
    assert "not installing pytest-" in read(archive, "pip.log")
    # plotly missing: the search's tables are written and its page skipped, with one line
    assert "./runs/gpu-search/report.html" not in names and "plotly is not installed" in read(archive, "search.log")

    # every probe and the bench: each row says which path ran and why
    proxy = json.loads((out / "probe-proxy.json").read_text())
    assert [v["variant"] for v in proxy["variants"]] == ["preset", "2x images", "4x images"]
    assert [v["train_images"] for v in proxy["variants"]] == [64, 128, 256]
    assert all(r["status"] == "ok" and (r["path"], r["why"]) == ("eager", "not CUDA")
               for v in proxy["variants"] for r in v["runs"])
    agreement = json.loads((out / "probe-agreement.json").read_text())
    assert agreement["verdict"]["results_agree"] and agreement["agreement"]["tolerance"]["n"] == 2
    assert all(d["d_accuracy"] == 0 for d in agreement["agreement"]["in_flight_vs_alone"])  # the CPU: bit for bit
    bench = json.loads((out / "bench.json").read_text())
    assert bench["stopped"] is None and [r["k"] for r in bench["in_flight"]] == [1, 2]
    assert all(c["paths"] == ["eager"] and set(c["ratio"]) == {"steady", "whole"} for c in bench["candidates"])
    search = json.loads((out / "search.json").read_text())
    assert search["evaluations"] == 6 and search["status"] == {"ok": 6}  # 2 a generation, the last one resumed
    assert search["generations"] == {"0": 2, "1": 2, "2": 2}


@pytest.mark.slow
def test_a_failing_step_is_recorded_and_the_rest_go_on(tmp_path):
    rc, summary, archive = gpu_check(tmp_path, STEPS="search,env", SEARCH_ARGS="--population 0")
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["env", "search"] and rc == 1 and not summary["ok"]
    assert steps["search"]["status"] == "failed" and steps["search"]["rc"] == 2
    assert summary["steps_not_ok"] == ["search"]
    assert "population" in read(archive, "search.log")
    assert steps["env"]["status"] == "ok"
    within_the_device_limits(tmp_path / "out")


@pytest.mark.slow
def test_a_step_past_its_time_is_stopped_and_recorded(tmp_path):
    endless = ("--workers 1 --population 2 --generations 100000 --epochs 0.5 --train-limit 64 --val-limit 32 "
               "--init-channels 4 --depth 2 --batch-size 32 --bn-recalibration 32")
    rc, summary, _ = gpu_check(tmp_path, STEPS="search,resume", SEARCH_ARGS=endless, TOTAL_S="45", timeout=180)
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["search"]["status"] == "timeout" and steps["search"]["rc"] == 124 and rc == 1
    assert steps["resume"]["status"] == "skipped" and "budget" in steps["resume"]["note"]


def test_the_step_limits_fit_the_budget_so_that_every_step_gets_its_turn():
    """The visit's steps in order of value, their limits adding up to the budget less the
    setup and the packing: with 970 s of limits against 470 s, the bench never ran."""
    script = (ROOT / "tools" / "gpu_check.sh").read_text()
    limits = {name: int(s) for name, s in re.findall(r"run_step ([a-z-]+) (\d+) ", script)}
    default = re.search(r"DEFAULT_STEPS=\(([^)]*)\)", script).group(1).split()
    budget = int(re.search(r"TOTAL_S=\$\{TOTAL_S:-(\d+)\}", script).group(1))
    assert default == STEPS and budget == 520 and "fidelity" in limits
    assert sum(limits[step] for step in default) <= budget - 20
