"""Build evo_nas/data/nb201-synflow.csv.gz: the synflow score (evo_nas.evaluate.zero_cost.synflow)
of every NAS-Bench-201 cell on each of the three data sets, taken with evonas's own network.

    .venv/bin/python tools/build_nb201_scores.py [--cpu-threads 1]

No data is needed (synflow feeds an image of ones), but every cell is built and scored, 46,875
times in all: about an hour of one core (0.03-0.15 s per network at C=16, N=5). The benchmark's own
skeleton is used (C=16, N=5, the data set's input size and classes, as the packaged table's params
and MACs), at the weights torch draws from zero_cost.SCORE_SEED, so that a run's predictor sees
for a cell what this file says. Data sets are scored one after the other, each cell's score
appended to OUT.<dataset>.partial as it is made; a run that is stopped continues from there.
Values have 7 significant digits; a cell whose output is always zero (no path from input to
output) scores 0, as in Abdelfattah et al.
tests/test_predictor.py rebuilds a seeded sample of cells and compares.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evo_nas import nb201_table  # noqa: E402
from evo_nas.evaluate.zero_cost import initialised, synflow  # noqa: E402
from evo_nas.spaces.nb201 import NB201Genome  # noqa: E402

DIGITS = 7  # significant digits kept
OUT = ROOT / "evo_nas" / "data" / "nb201-synflow.csv.gz"


def score(arch: str, dataset: str) -> float:
    """Synflow of the cell `arch` in the benchmark's skeleton for `dataset`."""
    skeleton = nb201_table.skeleton(dataset)
    genome = NB201Genome.from_arch_string(arch)
    return synflow(initialised(genome, skeleton), skeleton.input_shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads (results do not depend on it "
                                                                    "beyond the last digits)")
    args = parser.parse_args()
    torch.set_num_threads(args.cpu_threads)
    archs = nb201_table.table().archs
    columns = [scores(args.out, dataset, archs) for dataset in nb201_table.DATASETS]
    header = "index," + ",".join(f"{d}_synflow" for d in nb201_table.DATASETS)
    lines = [header] + [",".join([str(i), *(c[i] for c in columns)]) for i in range(len(archs))]
    data = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=9, mtime=0)
    args.out.write_bytes(data)
    for dataset in nb201_table.DATASETS:
        _partial(args.out, dataset).unlink()
    print(f"wrote {args.out} ({len(data):,} bytes)")


def scores(out: Path, dataset: str, archs: list[str]) -> list[str]:
    """Every cell's score on `dataset` as text, continuing the data set's partial file (one data
    set after the other, so the first is complete, and usable, long before the last)."""
    partial = _partial(out, dataset)
    done = partial.read_text().splitlines() if partial.exists() else []
    done = [line for i, line in enumerate(done) if line.startswith(f"{i},") and line.count(",") == 1]
    partial.write_text("".join(line + "\n" for line in done))  # a line cut short by a stop is made again
    start = time.perf_counter()
    with partial.open("a") as f:
        for i in range(len(done), len(archs)):
            f.write(f"{i},{score(archs[i], dataset):.{DIGITS - 1}e}\n")
            f.flush()
            if (i + 1) % 500 == 0:
                print(f"{dataset}: {i + 1}/{len(archs)} cells, {time.perf_counter() - start:.0f} s", flush=True)
    return [line.split(",")[1] for line in partial.read_text().splitlines()]


def _partial(out: Path, dataset: str) -> Path:
    return out.with_name(f"{out.name}.{dataset}.partial")


if __name__ == "__main__":
    main()
