"""Eleven fixed-seed CPU runs whose journals must not change when code is reorganised.

    python tools/reference_runs.py OUT            # make the runs under OUT, write OUT/digest.json
    python tools/reference_runs.py --compare A B  # the two digests, apart from timings: identical?

Each run is tiny (C=4 where the space has a width, 96 training images), so all eleven take a minute or two on 2 cores.
The digest holds every journal line without its timing fields, and every snapshot's search state.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

TIMINGS = {"wall_time", "images_per_s", "finished", "memory_reserved"}
# The global `random` module's state, which a snapshot also keeps: the search lends its own rng to
# DEAP for each call, so this is whatever the process held, and differs between identical runs.
PROCESS_STATE = {"python_rng"}
TINY = ["--train-limit", "96", "--val-limit", "64", "--bn-recalibration", "64",
        "--batch-size", "32", "--population", "4", "--no-report", "--cpu-threads", "1", "--seed", "3"]
NB = ["--space", "nb201", "--init-channels", "4", "--depth", "1"]
CELLS = ["--space", "cells", "--init-channels", "4", "--depth", "2"]
GENOMES = Path(__file__).resolve().parents[1] / "genomes"
RUNS = {
    "cells-nsga2": [*CELLS, "--generations", "1"],
    "cells-aging": [*CELLS, "--algorithm", "aging", "--sample", "2", "--generations", "2"],
    "layers-nsga2": ["--space", "layers", "--generations", "1"],
    "layers-aging": ["--space", "layers", "--algorithm", "aging", "--sample", "2", "--generations", "2"],
    "nb201-nsga2": [*NB, "--generations", "2"],
    "nb201-aging": [*NB, "--algorithm", "aging", "--sample", "2", "--generations", "3"],
    "random": [*NB, "--algorithm", "random", "--generations", "1"],
    "hparams": [*NB, "--hparams", "--generations", "1"],
    "sha": [*NB, "--fidelity", "sha", "--sha-rungs", "2", "--generations", "1"],
    "infeasible": [*NB, "--algorithm", "aging", "--sample", "2", "--generations", "2",
                   "--max-params", "3000"],
    "dedup": [*NB, "--generations", "1", "--seed-genomes",
              f"{GENOMES / 'nb201_resnet.yaml'},{GENOMES / 'nb201_resnet.yaml'}"],
}


def make(out: Path) -> None:
    from evo_nas.cli import main

    out.mkdir(parents=True, exist_ok=True)
    for name, args in RUNS.items():
        assert main(["run", *TINY, *args, "--runs-dir", str(out), "--name", name]) == 0, name
    resumed = RUNS["nb201-nsga2"][:-2]
    assert main(["run", *TINY, *resumed, "--generations", "1", "--runs-dir", str(out), "--name", "resumed"]) == 0
    assert main(["resume", str(out / "resumed"), "--generations", "2"]) == 0
    (out / "digest.json").write_text(json.dumps({p.name: digest(p) for p in sorted(out.iterdir()) if p.is_dir()},
                                                indent=1, sort_keys=True))


def digest(run: Path) -> dict:
    journal = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
               for line in (run / "journal.jsonl").read_text().splitlines()]
    snapshots = {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k not in PROCESS_STATE}
                 for p in sorted((run / "snapshots").glob("*.json"))}
    return {"journal": journal, "snapshots": snapshots}


def compare(a: Path, b: Path) -> int:
    left, right = (json.loads((p / "digest.json").read_text()) for p in (a, b))
    bad = [name for name in sorted(set(left) | set(right)) if left.get(name) != right.get(name)]
    for name in bad:
        print(f"differs: {name}")
    print(f"{len(left) - len(bad)} of {len(left)} runs identical apart from timings")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    make(Path(sys.argv[1]))
