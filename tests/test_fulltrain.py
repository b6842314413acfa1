"""Full training (`evonas train`): an interrupted CPU training resumes to bit-identical weights
and metrics, the files it promises, defaults per space, and one-line errors for bad input."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evo_nas import fulltrain
from evo_nas.checkpoint import load_model
from evo_nas.cli import main
from evo_nas.errors import ConfigError, RunDirError, UserError
from evo_nas.evaluate.count import count_params
from evo_nas.fulltrain import config_from_options, run, summary
from evo_nas.genome_io import load_genome
from evo_nas.records import Record
from evo_nas.spaces.nb201 import NB201Genome
from evo_nas.store import RunDir
from tests.fakes import FakeGraphedStep, graph_path_on_cpu

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
TIMING_KEYS = ("wall_time", "train_seconds", "images_per_s", "seconds")  # metrics that differ run to run
NB201 = ROOT / "genomes" / "nb201_resnet.yaml"
DARTS = ROOT / "genomes" / "darts_v2.yaml"
# Networks that train 2 epochs of 256 images in about a second on the CPU. The cell one keeps
# the auxiliary head and drop path of the final skeleton, so their RNG use is resumed too.
TINY = {NB201: {"init_channels": 4, "depth": 1}, DARTS: {"init_channels": 4, "depth": 3}}


class Interrupted(Exception):
    pass


def tiny(target: Path, out: Path, **changes) -> fulltrain.FullTrainConfig:
    cfg = config_from_options(str(target), {"out": str(out), "epochs": 2, "batch_size": 64, **TINY[target]})
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_limit=256, test_limit=256))
    return dataclasses.replace(cfg, **{"onnx": False, "device": "cpu",
                                       **changes})


def stop_after_epoch(k: int):
    def log(line: str) -> None:
        if line.startswith(f"epoch {k}/"):
            raise Interrupted(line)
    return log


def comparable(metrics: dict) -> dict:
    """metrics.json without what differs between two trainings of the same config: timings and
    the output folder."""
    out = {k: v for k, v in metrics.items() if k not in TIMING_KEYS}
    out["per_epoch"] = [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in metrics["per_epoch"]]
    out["config"] = {k: v for k, v in metrics["config"].items() if k != "out"}
    return out


@pytest.mark.parametrize("target", [NB201, DARTS], ids=["nb201", "cells"])
@pytest.mark.slow
def test_an_interrupted_training_resumes_to_identical_weights_and_metrics(tmp_path, target):
    whole = run(tiny(target, tmp_path / "whole"), log=None)
    cfg = tiny(target, tmp_path / "parts")
    with pytest.raises(Interrupted):
        run(cfg, log=stop_after_epoch(1))
    saved = json.loads((tmp_path / "parts" / "checkpoint.json").read_text())
    assert saved["epoch"] == 1 and len(saved["per_epoch"]) == 1
    assert not (tmp_path / "parts" / "metrics.json").exists()

    resumed = run(cfg, log=None)
    assert resumed.resumed_from == 1 and whole.resumed_from == 0
    for name in ("model.safetensors", "checkpoint.safetensors"):  # weights, BN statistics, momentum
        a, b = load_file(tmp_path / "whole" / name), load_file(tmp_path / "parts" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "parts" / "metrics.json").read_text())
    assert comparable(a) == comparable(b)
    assert a["per_epoch"][0]["train_loss"] != a["per_epoch"][1]["train_loss"]  # it did train


def test_a_diverging_training_is_one_line_error(tmp_path):
    cfg = tiny(NB201, tmp_path / "out")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e38, grad_clip=0))
    with pytest.raises(UserError, match=r"nan/inf loss at step \d+ in epoch 1 \(no epoch finished\)"):
        run(cfg, log=None)
    assert not (tmp_path / "out" / "checkpoint.safetensors").exists()


@pytest.mark.slow
def test_the_files_a_training_writes(tmp_path):
    cfg = tiny(NB201, tmp_path / "out", onnx=True)
    result = run(cfg, log=None)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [".evonas-train", "checkpoint.json", "checkpoint.safetensors",
                                                     "genome.yaml", "metrics.json", "model.onnx", "model.safetensors"]
    assert load_genome(out / "genome.yaml") == cfg.genome
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == result.test_accuracy and 0 <= result.test_accuracy <= 1
    assert metrics["test_images"] == 256 and metrics["train_images"] == 256 and metrics["epochs"] == 2
    assert [h["epoch"] for h in metrics["per_epoch"]] == [1, 2]
    assert metrics["per_epoch"][-1]["test_accuracy"] == result.test_accuracy
    assert metrics["onnx"]["max_abs_diff"] < 1e-4
    model = load_model(out)  # genome + skeleton from the file's metadata, weights loaded strictly
    assert count_params(model) == result.params == metrics["params"]
    lines = summary(result).splitlines()
    assert "test accuracy" in lines[1] and f"{result.params:,}" in lines[2]

    again = run(cfg, log=None)  # a finished training is reported, not repeated
    assert again.resumed_from == 2 and again.test_accuracy == result.test_accuracy
    assert "already complete" in summary(again)


def test_final_skeletons_per_space(tmp_path):
    cells = config_from_options(str(DARTS), {}).skeleton_for((3, 32, 32), 10)
    assert (cells.init_channels, cells.depth, cells.auxiliary, cells.drop_path) == (36, 20, True, 0.2)
    cfg = config_from_options(str(DARTS), {})
    assert cfg.out == str(Path("runs") / "train-darts-v2") and cfg.epochs == 50
    nb201 = config_from_options(str(NB201), {"epochs": 3}).skeleton_for((3, 32, 32), 10)
    assert (nb201.init_channels, nb201.depth, nb201.auxiliary, nb201.drop_path) == (16, 5, False, 0.0)
    layers = config_from_options(str(ROOT / "genomes" / "zoph_le_baseline.yaml"), {"auxiliary": False})
    assert layers.skeleton_for((1, 28, 28), 10).init_channels is None
    for target, option in ((NB201, {"auxiliary": True}), (NB201, {"drop_path": 0.1}),
                           (ROOT / "genomes" / "zoph_le_baseline.yaml", {"init_channels": 8})):
        with pytest.raises(ConfigError, match="does not apply"):
            config_from_options(str(target), option)


@pytest.mark.slow
def test_another_config_in_the_same_folder_is_refused(tmp_path, capsys):
    cfg = tiny(NB201, tmp_path / "out")
    with pytest.raises(Interrupted):
        run(cfg, log=stop_after_epoch(1))
    with pytest.raises(ConfigError, match="epochs=2, not 3"):
        run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=3)), log=None)
    with pytest.raises(ConfigError, match="another genome"):
        run(dataclasses.replace(cfg, genome=NB201Genome.from_arch_string(
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|")), log=None)
    assert main(["train", str(NB201), "--out", str(tmp_path / "out"), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a training with" in err
    # the same settings from elsewhere (a copy of the genome file) continue it
    assert run(dataclasses.replace(cfg, origin="elsewhere.yaml"), log=None).resumed_from == 1


@pytest.mark.slow
def test_the_graph_path_walks_the_eager_steps_and_falls_back_to_an_eager_run(tmp_path, monkeypatch):
    """Warm-up, capture and replays run the steps of the eager loop (epoch 1); a failed capture
    restarts from the state the session began with (epoch 2, resumed from a checkpoint), so the
    result is an eager run's, bit for bit."""
    run(tiny(DARTS, tmp_path / "eager"), log=None)
    graph_path_on_cpu(monkeypatch)
    cfg = tiny(DARTS, tmp_path / "graph")
    with pytest.raises(Interrupted):
        run(cfg, log=stop_after_epoch(1))
    FakeGraphedStep.fail_capture = True
    lines = []
    run(cfg, log=lines.append)
    a, b = load_file(tmp_path / "eager" / "model.safetensors"), load_file(tmp_path / "graph" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert FakeGraphedStep.captures == 2
    assert any("(pretend)" in line and "training eagerly from epoch 2" in line for line in lines)
    history = json.loads((tmp_path / "graph" / "metrics.json").read_text())["per_epoch"]
    assert [h["path"] for h in history] == ["graph", "eager"]


@pytest.mark.slow
def test_the_graph_is_captured_once_for_all_epochs(tmp_path, monkeypatch):
    graph_path_on_cpu(monkeypatch)
    metrics = run(tiny(DARTS, tmp_path / "out"), log=None).metrics
    assert FakeGraphedStep.captures == 1 and [h["path"] for h in metrics["per_epoch"]] == ["graph", "graph"]


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("target", [NB201, DARTS], ids=["nb201", "cells"])
def test_a_cuda_training_captures_its_step_and_resumes(tmp_path, target):
    """On CUDA a resumed training is not bit-identical (cuDNN, graph RNG); it must capture,
    resume, and export a model onnxruntime agrees with."""
    cfg = tiny(target, tmp_path / "out", device="cuda", onnx=True)
    with pytest.raises(Interrupted):
        run(cfg, log=stop_after_epoch(1))
    result = run(cfg, log=None)
    metrics = result.metrics
    assert result.resumed_from == 1 and metrics["device"].startswith("cuda") and metrics["precision"] == "bf16"
    assert [h["path"] for h in metrics["per_epoch"]] == ["graph", "graph"]
    assert all(h["train_loss"] < 3.5 for h in metrics["per_epoch"]) and 0 <= result.test_accuracy <= 1
    assert metrics["onnx"]["max_abs_diff"] < 1e-4


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_a_cuda_training_captures_once_for_all_its_epochs(tmp_path, monkeypatch):
    from evo_nas.evaluate.cuda_graph import GraphedStep

    captures, real = [], GraphedStep.capture
    monkeypatch.setattr(GraphedStep, "capture", lambda self: (captures.append(1), real(self))[1])
    cfg = config_from_options(str(DARTS), {"out": str(tmp_path / "out"), "epochs": 3, "batch_size": 64, **TINY[DARTS]})
    cfg = dataclasses.replace(cfg, train_limit=256, test_limit=256, onnx=False, device="cuda")
    metrics = run(cfg, log=None).metrics
    assert len(captures) == 1 and [h["path"] for h in metrics["per_epoch"]] == ["graph"] * 3


def fake_run(path: Path) -> Path:
    """A run directory with one successful and one failed evaluation (no training needed)."""
    run = RunDir.create(path, {"data": {"dataset": "fashion-mnist", "data_dir": None}, "space": {"space": "nb201"}},
                        {"seed": 0, "objectives": ["accuracy", "macs", "params"]})
    genome = load_genome(NB201).anonymous().to_dict()
    run.append(Record.from_json({"id": 0, "rung": 0, "generation": 0, "status": "ok", "accuracy": 0.5, "macs": 10,
                                 "params": 5, "genome": genome, "key": "k"}, "record 0"))
    run.append(Record.from_json({"id": 1, "rung": 0, "generation": 0, "status": "failed", "error": "out of memory",
                                 "genome": genome, "key": "k"}, "record 1"))
    return path


def test_a_run_evaluation_as_target(tmp_path):
    run_dir = fake_run(tmp_path / "myrun")
    cfg = config_from_options(f"{run_dir}#0", {"init_channels": 4})
    assert cfg.genome == load_genome(NB201) and cfg.genome.source == f"{run_dir}#0"
    assert cfg.genome.name == "myrun-id0" and cfg.out == str(Path("runs") / "train-myrun-id0")
    assert cfg.data.dataset == "fashion-mnist" and cfg.skeleton_for((1, 28, 28), 10).init_channels == 4


@pytest.mark.parametrize("target, words", [
    ("{tmp}/missing.yaml", "no such genome file"),
    ("{tmp}/bad.yaml", "bad.yaml: space"),
    ("{tmp}/nowhere#3", "nowhere: no such run directory"),
    ("{tmp}/myrun#x", "must be an integer, got 'x'"),
    ("{tmp}/myrun#7", "has no evaluation 7 (ids 0-1)"),
    ("{tmp}/myrun#1", "evaluation 1 is failed: out of memory"),
    ("{tmp}/myrun", "is a folder"),
])
def test_bad_targets_are_one_line_errors(tmp_path, capsys, target, words):
    fake_run(tmp_path / "myrun")
    (tmp_path / "bad.yaml").write_text("space: nowhere\n")
    assert main(["train", target.format(tmp=tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evonas: ") and err.count("\n") == 1 and words in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, words", [
    (["--dataset", "nope"], "unknown data set 'nope'"),
    (["--drop-path", "0.1"], "drop-path does not apply to nb201 genomes"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, words):
    assert main(["train", str(NB201), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_training_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="holds no evonas training"):
        run(tiny(NB201, tmp_path / "out"), log=None)


@pytest.mark.slow
def test_a_training_stopped_in_its_first_epoch_starts_again_with_the_same_command(tmp_path):
    """Ctrl-C (or kill -9, which leaves the same files) before the first checkpoint: the folder is
    evonas's own, and the same command trains in it, as the message says."""
    cfg = tiny(NB201, tmp_path / "out")

    def ctrl_c(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="run the same command to continue"):
        run(cfg, log=None, on_steps=ctrl_c)
    assert (tmp_path / "out").is_dir() and not (tmp_path / "out" / "checkpoint.safetensors").exists()
    result = run(cfg, log=None)
    assert result.resumed_from == 0 and [h["epoch"] for h in result.metrics["per_epoch"]] == [1, 2]


def test_data_without_a_test_split_is_refused_before_out_is_made(tmp_path, capsys):
    np.savez(tmp_path / "mine.npz", x=np.zeros((8, 16, 16), np.uint8), y=np.arange(8) % 2)
    out = tmp_path / "out"
    assert main(["train", str(NB201), "--dataset", f"npz:{tmp_path / 'mine.npz'}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no test split; add arrays x_test and y_test" in err
    assert not out.exists()


@pytest.mark.slow
def test_every_step_is_told_with_the_epochs_mean_loss_so_far(tmp_path):
    told = []
    result = run(tiny(NB201, tmp_path / "bar"), log=None,
                 on_steps=lambda epoch, epochs, done, steps, loss: told.append((epoch, epochs, done, steps, loss())))
    steps = told[0][3]
    assert steps == 4  # 256 images at batch 64
    assert [(e, d) for e, _, d, _, _ in told] == [(e, d) for e in (1, 2) for d in range(1, steps + 1)]
    for h in result.metrics["per_epoch"]:  # the last step's running mean is the epoch's mean loss
        last = [loss for e, _, d, _, loss in told if e == h["epoch"] and d == steps]
        assert last == [pytest.approx(h["train_loss"], rel=1e-5)]


@pytest.mark.slow
def test_the_epoch_bar_draws_steps_loss_and_images_per_second(tmp_path):
    from io import StringIO

    from rich.console import Console

    from evo_nas.progress import EpochBar

    screen = StringIO()
    bar = EpochBar(64, console=Console(file=screen, force_terminal=True, width=120), every=0.0)
    run(tiny(NB201, tmp_path / "bar"), log=None, on_steps=bar)
    bar.close()
    shown = screen.getvalue()
    assert "epoch 2/2" in shown and "4/4" in shown and "images/s" in shown and "loss 2." in shown
