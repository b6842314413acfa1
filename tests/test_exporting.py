"""`evonas export` of a run's genomes and front, and ONNX models that onnxruntime runs with
PyTorch's outputs."""

import csv
from pathlib import Path

import pytest
import torch

from evo_nas.build import Skeleton, build
from evo_nas.cli import main
from evo_nas.errors import ConfigError, RunDirError
from evo_nas.exporting import export_onnx, export_run, onnx_parity
from evo_nas.genome_io import load_genome
from evo_nas.records import Record
from evo_nas.spaces.nb201 import NB201Genome
from evo_nas.store import RunDir

ROOT = Path(__file__).resolve().parents[1]
PARITY_ATOL = 1e-4  # onnxruntime vs torch, float32 logits: each runtime picks its own conv kernels
ARCHES = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|",
          "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|",
          "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|",
          "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|none~1|none~2|",
          "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"]


def record(ident, arch, status="ok", accuracy=None, macs=None, params=None, **more):
    genome = NB201Genome.from_arch_string(ARCHES[arch]).to_dict()
    return Record.from_json({"id": ident, "rung": 0, "generation": ident // 3, "operator": "init", "status": status,
                             "accuracy": accuracy, "macs": macs, "params": params, "genome": genome, **more},
                            f"test record {ident}")


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A journal whose front is known: 5 (at its higher rung), then 1, then 0; 2 is dominated by
    0, 3 failed, 4 is a cache hit of 1."""
    run = RunDir.create(tmp_path / "myrun", {"space": "nb201", "objectives": ["accuracy", "macs", "params"]},
                        {"seed": 0, "objectives": ["accuracy", "macs", "params"]})
    for r in [record(0, 0, accuracy=0.80, macs=100, params=10), record(1, 1, accuracy=0.85, macs=200, params=20),
              record(2, 2, accuracy=0.70, macs=300, params=30), record(3, 3, status="failed", error="nan loss"),
              record(4, 1, accuracy=0.85, macs=200, params=20, cache_of=1),
              record(5, 4, accuracy=0.50, macs=400, params=40),
              record(5, 4, accuracy=0.90, macs=400, params=40, rung=1)]:
        run.append(r)
    return run.path


def read_summary(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_of_the_front(run_dir):
    written = export_run(run_dir, front_only=True)
    folder = run_dir / "export"
    assert [p.name for p in written] == ["front-01-id5.yaml", "front-02-id1.yaml", "front-03-id0.yaml", "summary.csv"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written)
    best = load_genome(folder / "front-01-id5.yaml")
    assert best == NB201Genome.from_arch_string(ARCHES[4])
    assert best.source == f"{run_dir}#5" and best.name == "myrun-id5"  # `evonas train` takes that source
    rows = read_summary(folder / "summary.csv")
    assert [(r["rank"], r["id"], r["accuracy"], r["macs"], r["params"], r["file"]) for r in rows] == [
        ("1", "5", "0.9", "400", "40", "front-01-id5.yaml"), ("2", "1", "0.85", "200", "20", "front-02-id1.yaml"),
        ("3", "0", "0.8", "100", "10", "front-03-id0.yaml")]


def test_export_of_every_evaluation_and_no_overwrites(run_dir, tmp_path):
    out = tmp_path / "all"
    names = [p.name for p in export_run(run_dir, front_only=False, out=out)]
    # id order; cache hit 4 left out; the failed one kept, with its status
    assert names == ["front-03-id0.yaml", "front-02-id1.yaml", "id2.yaml", "id3.yaml", "front-01-id5.yaml",
                     "summary.csv"]
    rows = {r["id"]: r for r in read_summary(out / "summary.csv")}
    assert rows["3"]["status"] == "failed" and rows["3"]["accuracy"] == "" and rows["2"]["rank"] == ""
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match="already exists"):
        export_run(run_dir, front_only=True, out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_export_through_the_cli(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--front", "--out", str(tmp_path / "x")]) == 0
    assert "exported 4 files" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run directory" in err


def test_a_run_without_successes_has_no_front(tmp_path):
    run = RunDir.create(tmp_path / "r", {"space": "nb201"}, {"seed": 0, "objectives": ["accuracy", "macs"]})
    run.append(record(0, 0, status="failed", error="nan loss"))
    with pytest.raises(RunDirError, match="no successful evaluation"):
        export_run(run.path, front_only=True)


@pytest.mark.parametrize("genome_file, sizes", [
    ("darts_v2.yaml", {"init_channels": 8, "depth": 5, "auxiliary": True, "drop_path": 0.2}),
    ("nb201_resnet.yaml", {"init_channels": 8, "depth": 1}),
], ids=["cells", "nb201"])
@pytest.mark.slow
def test_onnx_runs_in_onnxruntime_with_torchs_outputs(tmp_path, genome_file, sizes):
    skeleton = Skeleton(input_shape=(1, 28, 28), classes=10, **sizes)
    torch.manual_seed(0)
    model = build(load_genome(ROOT / "genomes" / genome_file), skeleton)
    with torch.no_grad():  # BN statistics that are not the identity, so they are exported too
        model.train()
        model(torch.randn(16, 1, 28, 28))
    path = export_onnx(model, skeleton.input_shape, tmp_path / "m.onnx")
    assert not model.training  # exported, and left, in eval mode: no auxiliary head, no drop path
    for images in (1, 5):  # traced at batch 2: the batch axis is dynamic
        assert onnx_parity(model, path, skeleton.input_shape, images=images, seed=images) < PARITY_ATOL
