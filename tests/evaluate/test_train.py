"""The training engine: learning on real Fashion-MNIST, determinism, failures as data, schedules,
optimizers, resuming from a state; on CUDA the whole-step graph, its fallbacks, and several
GraphedSteps on several streams."""

import dataclasses
import functools
import itertools
import math
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from evo_nas.build import build
from evo_nas.config import Skeleton, TrainConfig
from evo_nas.errors import ConfigError
from evo_nas.evaluate import cuda_graph
from evo_nas.evaluate.cuda_graph import GraphedStep, graphed_step
from evo_nas.evaluate.data import load_dataset, split, subset
from evo_nas.evaluate.device_data import DeviceData
from evo_nas.evaluate.engine import (
    StepCore,
    Trainer,
    TrainingFailed,
    align_grads,
    choose_path,
    evaluate,
    lr_factor,
    make_optimizer,
    resolve_hparams,
    scaled_lr,
    set_lr,
    train,
)
from evo_nas.ops import DropPath
from evo_nas.spaces.layers import Layer, LayerGenome
from tests.fakes import FakeGraphedStep, graph_path_on_cpu

ROOT = Path(__file__).resolve().parents[2]
CUDA = torch.cuda.is_available()


def cuda_test(fn):
    """@pytest.mark.cuda, skipped where there is no GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not CUDA, reason="needs CUDA")(fn))


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist")


def splits(dataset, n_train=2000, n_val=500, device="cpu"):
    train_idx, val_idx = split(len(dataset.x_train), 0.1, seed=0)
    return (DeviceData(dataset, subset(train_idx, n_train, 0), device),
            DeviceData(dataset, subset(val_idx, n_val, 0), device, flip=False))


@pytest.fixture(scope="module")
def cpu_data(fashion):
    return splits(fashion)


def small_net(seed=0, dropout=0.1) -> nn.Module:
    """Two conv/BN/ReLU/pool blocks and a linear head: ~17K parameters, learns in seconds."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(32 * 7 * 7, 10))


class NanAfter(nn.Module):
    """Wraps a net; from training call `after + 1` on its logits are -inf, so the loss is NaN.
    The call count is a device buffer, so this also works inside a CUDA graph."""

    def __init__(self, inner: nn.Module, after: int):
        super().__init__()
        self.inner, self.after = inner, after
        self.register_buffer("calls", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            out = out + torch.log((self.calls <= self.after).float())  # log 1 = 0, log 0 = -inf
        return out


class AuxNet(nn.Module):
    """(logits, aux_logits) in training, as DARTS' networks; built with drop path `drop_path_max`,
    whose current probability is a plain float."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Flatten())
        self.head = nn.Linear(8 * 14 * 14, 10)
        self.aux = nn.Linear(8 * 14 * 14, 10)
        self.drop_path_prob = 0.0
        self.drop_path_max = 0.0

    def forward(self, x):
        h = self.body(x)
        return (self.head(h), self.aux(h)) if self.training else self.head(h)


class ZeroLogits(nn.Module):
    """Logits all 0 whatever the input: the loss is exactly log(10) at every step."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.flatten(1)[:, :10] * 0 * self.w  # gradient 0: w never moves


# ---------------------------------------------------------------- CPU

@pytest.mark.slow
def test_learns_fashion_mnist_on_cpu(cpu_data):
    train_data, val_data = cpu_data
    result = train(small_net(), train_data, val_data, TrainConfig(epochs=2, batch_size=128), "cpu", seed=0)
    assert result.val_accuracy > 0.6  # chance is 0.1
    assert result.path == "eager" and result.fallback_reason == ""
    assert result.precision == "fp32"
    assert result.steps == 2 * (2000 // 128) and result.epochs == 2.0
    assert 0.3 < result.train_loss < 2.0
    assert result.images_per_s > 0 and result.wall_time > 0


@pytest.mark.slow
def test_a_plain_layer_stack_learns_in_a_short_training(cpu_data):
    """The layer space's conv -> BN -> ReLU stacks train (issue 22, docs/layers.md): three layers,
    a skip from the image, 124 steps. Seeds 0-4 gave 0.65-0.69; with the classifier on raw pooled
    features and the image zero-padded into a corner (the builder before), 0.42-0.51."""
    genome = LayerGenome(layers=(Layer(3, 3, 16, (0,)), Layer(3, 3, 24, (1,)), Layer(3, 3, 32, (0, 2))))
    torch.manual_seed(0)
    model = build(genome, Skeleton(input_shape=(1, 28, 28), classes=10))
    result = train(model, *cpu_data, TrainConfig(epochs=2, batch_size=32, lr=0.4, bn_recalibration=512), "cpu", seed=0)
    assert result.val_accuracy > 0.6


@pytest.mark.slow
def test_same_seed_same_numbers_other_seed_other_numbers(cpu_data):
    cfg = TrainConfig(epochs=1, batch_size=128)

    def numbers(seed):
        r = train(small_net(0), *cpu_data, cfg, "cpu", seed=seed)
        return r.val_accuracy, r.train_loss

    first = numbers(1)
    assert numbers(1) == first
    assert numbers(2) != first


@pytest.mark.parametrize("epochs, steps", [(0.5, 4), (1.5, 12), (0.01, 1)])
@pytest.mark.slow
def test_fractional_epochs_run_that_fraction_of_the_batches(cpu_data, epochs, steps):
    cfg = TrainConfig(epochs=epochs, batch_size=250)  # 2000 images: 8 batches an epoch
    result = train(small_net(), *cpu_data, cfg, "cpu", seed=0)
    assert result.steps == steps
    assert result.epochs == pytest.approx(steps / 8)


def test_nan_loss_is_a_training_failure_at_its_step(cpu_data):
    with pytest.raises(TrainingFailed, match="nan") as caught:
        train(NanAfter(small_net(), after=3), *cpu_data, TrainConfig(batch_size=128), "cpu", seed=0)
    assert "step 4" in caught.value.reason and caught.value.steps == 4


def test_training_failure_survives_pickling():
    failure = pickle.loads(pickle.dumps(TrainingFailed("nan/inf loss at step 3", steps=3)))
    assert (failure.reason, failure.steps, str(failure)) == ("nan/inf loss at step 3", 3, "nan/inf loss at step 3")


def test_time_limit_is_a_training_failure(cpu_data):
    with pytest.raises(TrainingFailed, match=r"time limit 1e-09s exceeded after 1 steps"):
        train(small_net(), *cpu_data, TrainConfig(batch_size=128, time_limit=1e-9), "cpu", seed=0)


def test_loss_is_the_mean_of_the_step_losses(cpu_data):
    result = train(ZeroLogits(), *cpu_data, TrainConfig(batch_size=128, grad_clip=0), "cpu", seed=0)
    assert result.train_loss == pytest.approx(math.log(10), rel=1e-6)


def test_aux_head_and_drop_path_annealing(cpu_data):
    model = AuxNet()
    model.drop_path_max = 0.3
    cfg = TrainConfig(epochs=1, batch_size=100)  # 20 steps
    result = train(model, *cpu_data, cfg, "cpu", seed=0)
    assert math.isfinite(result.train_loss) and result.val_accuracy > 0.3
    assert model.drop_path_prob == pytest.approx(0.3 * 19 / 20)  # annealed from 0, one step short of max
    assert not model.training


@pytest.mark.slow
def test_hparams_override_optimizer_lr_and_weight_decay(cpu_data):
    hp = SimpleNamespace(lr=0.004, weight_decay=1e-4, optimizer="adam", dropout=0.3)
    result = train(small_net(), *cpu_data, TrainConfig(batch_size=128), "cpu", seed=0, hparams=hp)
    assert result.optimizer == "adam"
    assert result.lr == pytest.approx(0.004 * 128 / 256)
    assert resolve_hparams(TrainConfig(), hp) == ("adam", 0.004, 1e-4)
    assert resolve_hparams(TrainConfig(lr=0.3), None) == ("sgd", 0.3, 5e-4)
    with pytest.raises(ConfigError):
        resolve_hparams(TrainConfig(), SimpleNamespace(lr=0.1, weight_decay=0.0, optimizer="lamb", dropout=0.0))


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("rmsprop", torch.optim.RMSprop)])
def test_make_optimizer(name, cls):
    opt = make_optimizer(small_net().parameters(), name, 0.05, 3e-4, TrainConfig())
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 3e-4
    if name == "sgd":
        assert group["momentum"] == 0.9 and group["nesterov"]
    set_lr(opt, 0.01)
    assert opt.param_groups[0]["lr"] == 0.01


def test_make_optimizer_refuses_unknown_and_cpu_capturable():
    with pytest.raises(ConfigError, match="lamb"):
        make_optimizer(small_net().parameters(), "lamb", 0.1, 0.0, TrainConfig())
    with pytest.raises(ValueError, match="CUDA"):
        make_optimizer(small_net().parameters(), "adam", 0.1, 0.0, TrainConfig(), "cpu", capturable=True)


def test_set_lr_fills_a_tensor_rate_in_place():
    rate = torch.tensor(0.1)
    opt = torch.optim.Adam(small_net().parameters(), lr=rate)
    set_lr(opt, 0.02)
    assert opt.param_groups[0]["lr"] is rate and rate.item() == pytest.approx(0.02)


def test_lr_scales_linearly_with_batch():
    assert scaled_lr(0.2, 256) == pytest.approx(0.2)
    assert scaled_lr(0.2, 128) == pytest.approx(0.1)
    assert scaled_lr(0.2, 1024) == pytest.approx(0.8)


def test_onecycle_warms_up_to_the_peak_then_decays_to_near_zero():
    total = 100
    f = [lr_factor(s, total, "onecycle", 0.2) for s in range(total)]
    assert f[0] == pytest.approx(1 / 20) and f[19] == 1.0 and f[20] == 1.0
    assert all(a < b for a, b in zip(f[:20], f[1:20]))  # rising
    assert all(a > b for a, b in zip(f[20:], f[21:]))  # falling
    assert f[-1] == pytest.approx(1 / 80) and min(f) > 0


def test_cosine_and_constant_schedules():
    total = 50
    cos = [lr_factor(s, total, "cosine", 0.0) for s in range(total)]
    assert cos[0] == 1.0 and cos[25] == pytest.approx(0.5) and 0 < cos[-1] < 0.01
    const = [lr_factor(s, total, "constant", 0.1) for s in range(total)]
    assert const[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]) and set(const[5:]) == {1.0}


def test_choose_path():
    cfg, model = TrainConfig(), small_net()
    assert choose_path("cpu", cfg, model) == ("eager", "not CUDA")
    assert choose_path("cuda", cfg, model) == ("graph", "")
    assert choose_path("cuda", TrainConfig(cuda_graph="off"), model)[0] == "eager"
    model.graph_safe = False
    path, reason = choose_path("cuda", cfg, model)
    assert path == "eager" and "graph_safe" in reason
    path, reason = choose_path("cuda", cfg, small_net(), steps=3)
    assert path == "eager" and "3 steps" in reason
    assert choose_path("cuda", cfg, small_net(), steps=4) == ("graph", "")
    with pytest.raises(ConfigError, match="not CUDA"):
        choose_path("cpu", TrainConfig(cuda_graph="on"), small_net())
    with pytest.raises(ConfigError, match="graph_safe"):
        choose_path("cuda", TrainConfig(cuda_graph="on"), model)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(optimizer="lamb"), dict(schedule="step"),
                                 dict(warmup=1.0), dict(cuda_graph="yes"), dict(precision="fp16"),
                                 dict(warmup_steps_before_capture=0),
                                 dict(grad_clip=-1.0), dict(channels_last="maybe")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_step_core_accumulates_the_main_loss_only():
    model = AuxNet()
    opt = make_optimizer(model.parameters(), "sgd", 1e-9, 0.0, TrainConfig())
    loss_sum = torch.zeros(())
    core = StepCore(model.train(), opt, TrainConfig(label_smoothing=0.0), loss_sum, "fp32")
    x, y = torch.randn(4, 1, 28, 28), torch.arange(4)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x)[0], y)
    core(x, y)
    assert loss_sum.item() == pytest.approx(expected.item(), rel=1e-5)


def graph_orchestration_on_cpu(monkeypatch, model, data, cfg, fail=False):
    """The Trainer's graph path on the CPU, with FakeGraphedStep and a plain optimizer."""
    graph_path_on_cpu(monkeypatch, fail)
    trainer = Trainer(model, data[0], cfg, "cpu", 3)
    trainer.mark(5)
    try:
        trainer.run()
    finally:
        trainer.close()
    return trainer.fallback_reason, trainer.mean_loss(5, trainer.total), evaluate(model, data[1])


def eager_on_cpu(model, data, cfg):
    trainer = Trainer(model, data[0], cfg, "cpu", 3)
    trainer.mark(5)
    trainer.run()
    return trainer.mean_loss(5, trainer.total), evaluate(model, data[1])


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.slow
def test_graph_orchestration_matches_eager_and_falls_back_from_the_start(monkeypatch, cpu_data, fail):
    """Warm-up, capture and replays walk the same steps with the same schedule as the eager
    loop; after a failed capture the run restarts from the initial weights and seeds."""
    cfg = TrainConfig(epochs=1, batch_size=128)
    expected = eager_on_cpu(small_net(), cpu_data, cfg)
    closed = FakeGraphedStep.closed
    reason, loss, accuracy = graph_orchestration_on_cpu(monkeypatch, small_net(), cpu_data, cfg, fail)
    assert (loss, accuracy) == expected
    assert reason == ("capture failed (pretend)" if fail else "")
    assert FakeGraphedStep.closed == closed + 1


def test_graph_orchestration_failures(monkeypatch, cpu_data):
    with pytest.raises(TrainingFailed, match="cuda_graph='on'"):
        graph_orchestration_on_cpu(monkeypatch, small_net(), cpu_data, TrainConfig(batch_size=128, cuda_graph="on"),
                                   fail=True)
    closed = FakeGraphedStep.closed
    with pytest.raises(TrainingFailed, match="nan/inf loss at step 5"):
        graph_orchestration_on_cpu(monkeypatch, NanAfter(small_net(), after=4), cpu_data, TrainConfig(batch_size=128))
    assert FakeGraphedStep.closed == closed + 1


class DropPathProbe(nn.Module):
    """A conv, one drop path at a fixed p = 0.5 (the trainer's annealing is ignored, so equal
    draws give equal masks) and a head; `kept`, a device buffer written inside the step (so a
    CUDA graph's replays write it too), says which samples the last training step kept."""

    drop_path_max = 0.5

    def __init__(self, batch: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.drop, self.head = nn.Conv2d(1, 4, 3, padding=1), DropPath(0.5), nn.Linear(4, 10)
        self.register_buffer("kept", torch.zeros(batch, dtype=torch.bool), persistent=False)

    @property
    def drop_path_prob(self) -> float:
        return 0.5

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        pass

    def forward(self, x):
        h = self.drop(torch.relu(self.conv(x)) + 1)  # positive: a zero is a dropped sample
        if self.training:
            self.kept.copy_(h.flatten(1)[:, 0] != 0)
        return self.head(h.mean((2, 3)))


def drop_path_masks_per_epoch(data: DeviceData, device: str, epochs: int = 3):
    """Train a DropPathProbe as `evonas train` does, one steps() call per epoch: each epoch's
    masks (steps x batch), and the trainer (closed)."""
    model = DropPathProbe(64)
    trainer = Trainer(model, data, TrainConfig(batch_size=64, epochs=epochs), device, seed=0,
                      total=data.num_batches(64) * epochs)
    masks = []
    try:
        for epoch in range(epochs):
            masks.append(torch.stack([model.kept.clone() for _ in trainer.steps((epoch + 1) * trainer.per_epoch)]))
    finally:
        trainer.close()
    return [m.cpu() for m in masks], trainer


def test_one_capture_for_all_epochs_and_new_drop_path_masks_each_epoch(monkeypatch, fashion):
    """The graph is captured once per Trainer and its RNG runs on across steps() calls; a
    capture per epoch, reseeded alike, drew the same masks step for step every epoch
    (FakeGraphedStep's own_rng draws from a state of its own, as a graph does)."""
    graph_path_on_cpu(monkeypatch, own_rng=True)
    closed = FakeGraphedStep.closed
    masks, trainer = drop_path_masks_per_epoch(splits(fashion, 256, 64)[0], "cpu")
    assert FakeGraphedStep.captures == 1 and FakeGraphedStep.closed == closed + 1 and trainer.path == "graph"
    assert [m.shape for m in masks] == [(4, 64)] * 3
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(masks, 2))
    assert 0.35 < torch.cat(masks).float().mean() < 0.65  # p = 0.5


def test_the_cache_is_emptied_only_past_its_share_of_the_gpu():
    emptied = []

    def release(reserved: int, share=None) -> bool:
        return cuda_graph.release_cache(torch.device("cuda", 0), share, reserved=lambda d: reserved,
                                        total=lambda d: 1000, empty=lambda: emptied.append(reserved))

    assert cuda_graph.RELEASE_SHARE == 0.25
    assert [release(100), release(250), release(251), release(400, share=0.5), release(501, share=0.5)] == \
        [False, False, True, False, True]
    assert emptied == [251, 501]


def test_align_grads_gives_grads_the_parameter_strides_without_a_copy():
    weight = nn.Parameter(torch.empty_strided((8, 1, 3, 3), (9, 1, 3, 1)).normal_())  # channels_last
    weight.grad = torch.randn(8, 1, 3, 3)  # contiguous: strides differ only on the size-1 dim
    other = nn.Parameter(torch.randn(4, 5))
    other.grad = torch.randn(4, 5)
    before = weight.grad.clone()
    pointer = weight.grad.data_ptr()
    assert weight.grad.stride() != weight.stride()
    align_grads([weight, other, nn.Parameter(torch.zeros(2))])
    assert weight.grad.stride() == weight.stride()
    assert weight.grad.data_ptr() == pointer and torch.equal(weight.grad, before)


# ---------------------------------------------------------------- CUDA

@pytest.fixture(scope="module")
def cuda_data(fashion):
    return splits(fashion, 6000, 1000, device="cuda")


@cuda_test
def test_graph_path_trains(cuda_data):
    result = train(small_net(), *cuda_data, TrainConfig(epochs=2, batch_size=128), "cuda", seed=0)
    assert result.path == "graph", result.fallback_reason
    assert result.fallback_reason == ""
    assert result.precision == "bf16"
    assert math.isfinite(result.train_loss) and result.val_accuracy > 0.7


@cuda_test
@pytest.mark.parametrize("optimizer, lr", [("adam", 0.004), ("rmsprop", 0.002)])
def test_graph_path_trains_with_adaptive_optimizers(cuda_data, optimizer, lr):
    cfg = TrainConfig(epochs=2, batch_size=128, optimizer=optimizer, lr=lr)
    result = train(small_net(), *cuda_data, cfg, "cuda", seed=0)
    assert result.path == "graph", result.fallback_reason
    assert math.isfinite(result.train_loss) and result.val_accuracy > 0.6


@cuda_test
def test_graph_and_eager_reach_similar_accuracy(cuda_data):
    results = {mode: train(small_net(), *cuda_data, TrainConfig(epochs=3, batch_size=128, cuda_graph=mode),
                           "cuda", seed=0) for mode in ("auto", "off")}
    assert results["auto"].path == "graph" and results["off"].path == "eager"
    assert results["off"].fallback_reason == "cuda_graph='off'"
    assert abs(results["auto"].val_accuracy - results["off"].val_accuracy) < 0.06
    assert abs(results["auto"].train_loss - results["off"].train_loss) < 0.15


class SyncsInForward(nn.Module):
    """Calls .item() in forward: a host sync, which capture cannot hold."""

    def __init__(self):
        super().__init__()
        self.inner = small_net()

    def forward(self, x):
        out = self.inner(x)
        if out.abs().max().item() > 1e30:
            out = out * 0
        return out


@cuda_test
def test_a_syncing_model_falls_back_to_eager(cuda_data):
    result = train(SyncsInForward(), *cuda_data, TrainConfig(epochs=1, batch_size=128), "cuda", seed=0)
    assert result.path == "eager" and "sync" in result.fallback_reason
    assert result.val_accuracy > 0.5
    with pytest.raises(TrainingFailed, match="capture failed"):
        train(SyncsInForward(), *cuda_data, TrainConfig(epochs=1, batch_size=128, cuda_graph="on"), "cuda", seed=0)


class FailsWhenCaptured(nn.Module):
    """Trains eagerly, but fails while a CUDA graph is being captured."""

    def __init__(self, how: str):
        super().__init__()
        self.inner, self.how = small_net(), how

    def forward(self, x):
        if torch.cuda.is_current_stream_capturing():
            if self.how == "raise":
                raise RuntimeError("this model refuses capture")
            if self.how == "oom":
                raise torch.cuda.OutOfMemoryError("pretend the graph pool is full")
        return self.inner(x)


@cuda_test
@pytest.mark.parametrize("how, words", [("raise", "refuses capture"), ("oom", "out of memory")])
def test_a_failed_capture_falls_back_cleanly(cuda_data, how, words):
    cfg = TrainConfig(epochs=1, batch_size=128)
    eager = train(FailsWhenCaptured(how), *cuda_data, TrainConfig(epochs=1, batch_size=128, cuda_graph="off"),
                  "cuda", seed=0)
    result = train(FailsWhenCaptured(how), *cuda_data, cfg, "cuda", seed=0)
    assert result.path == "eager" and words in result.fallback_reason
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    # the fallback restarts from the initial state: it is an eager run of the same seed
    assert abs(result.val_accuracy - eager.val_accuracy) < 0.03
    after = train(small_net(), *cuda_data, cfg, "cuda", seed=0)  # nothing left behind
    assert after.path == "graph" and math.isfinite(after.train_loss)


@cuda_test
def test_a_capture_cuda_invalidates_falls_back_and_leaves_capture_working():
    """torch.cuda.synchronize() inside capture makes CUDA invalidate the capture (capture_end
    fails). Run in a child process, so that a torch that cannot clean up fails only this test."""
    code = textwrap.dedent("""
        import math, torch
        from evo_nas.evaluate.data import load_dataset
        from evo_nas.build import build
from evo_nas.config import Skeleton, TrainConfig
        from evo_nas.evaluate.engine import train
        from tests.evaluate.test_train import splits, small_net

        class SyncsWhenCaptured(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = small_net()
            def forward(self, x):
                if torch.cuda.is_current_stream_capturing():
                    torch.cuda.synchronize()
                return self.inner(x)

        data = splits(load_dataset("fashion-mnist"), 2000, 500, device="cuda")
        cfg = TrainConfig(epochs=1, batch_size=128)
        r = train(SyncsWhenCaptured(), *data, cfg, "cuda", seed=0)
        assert r.path == "eager" and "capture failed" in r.fallback_reason, r
        assert torch.cuda.current_stream() == torch.cuda.default_stream()
        for seed in range(2):
            r = train(small_net(), *data, cfg, "cuda", seed=seed)
            assert r.path == "graph" and math.isfinite(r.train_loss) and r.val_accuracy > 0.4, r
        torch.cuda.synchronize()
        print("OK")
    """)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr[-3000:]


@cuda_test
def test_nan_and_time_limit_on_the_graph_path(cuda_data):
    cfg = TrainConfig(epochs=3, batch_size=128)  # 138 steps
    with pytest.raises(TrainingFailed, match="nan") as caught:
        train(NanAfter(small_net(), after=60), *cuda_data, cfg, "cuda", seed=0)
    assert caught.value.steps == 100  # found at the second check, 50 steps apart
    with pytest.raises(TrainingFailed, match="exceeded after 50 steps"):
        train(small_net(), *cuda_data, TrainConfig(epochs=3, batch_size=128, time_limit=1e-6), "cuda", seed=0)


@cuda_test
def test_cell_network_with_aux_head_and_drop_path_on_the_graph_path(cuda_data):
    from evo_nas.build import Skeleton, build
    from evo_nas.genome_io import PACKAGED, load_genome

    torch.manual_seed(0)
    genome = load_genome(PACKAGED / "darts_v2.yaml")
    model = build(genome, Skeleton(input_shape=(1, 28, 28), init_channels=8, depth=3, auxiliary=True,
                                   drop_path=0.2))
    result = train(model, *cuda_data, TrainConfig(epochs=1, batch_size=128), "cuda", seed=0)
    assert result.path == "graph", result.fallback_reason
    assert math.isfinite(result.train_loss) and result.val_accuracy > 0.2
    assert model.drop_path_prob > 0.15


def graphed_candidate(model: nn.Module, seed: int, batch: int = 128):
    """A GraphedStep training `model` (bf16, channels_last, capturable SGD) and its loss sum."""
    model.cuda().to(memory_format=torch.channels_last).train()
    cfg = TrainConfig()
    opt = make_optimizer(model.parameters(), "sgd", 0.05, 5e-4, cfg, "cuda", capturable=True)
    loss_sum = torch.zeros((), device="cuda")
    core = StepCore(model, opt, cfg, loss_sum, "bf16", autocast_cache=False)
    return graphed_step(core, (batch, 1, 28, 28), torch.device("cuda", torch.cuda.current_device()),
                        keep=(model, opt, core), seed=seed), loss_sum


@cuda_test
def test_two_graphed_steps_replay_interleaved_on_two_streams(cuda_data):
    train_data = cuda_data[0]
    gen = torch.Generator().manual_seed(0)
    batches = (b for _ in range(100) for b in train_data.batches(128, gen, augment=True))
    a, loss_a = graphed_candidate(small_net(0, dropout=0.2), seed=1)
    b, loss_b = graphed_candidate(nn.Sequential(small_net(1), nn.Dropout(0.1)), seed=2)
    for _ in range(3):
        a.run_eager(next(batches))
    a.capture()
    for _ in range(5):
        a.replay(next(batches))  # A runs while B warms up and is captured
    for _ in range(3):
        b.run_eager(next(batches))
    b.capture()
    stream_a, stream_b = torch.cuda.Stream(), torch.cuda.Stream()
    sums = []
    for i in range(400):
        a.replay(next(batches), stream=stream_a)
        b.replay(next(batches), stream=stream_b)
        if i in (49, 399):
            torch.cuda.synchronize()
            sums.append((loss_a.item(), loss_b.item()))
    torch.cuda.synchronize()
    a.close()
    b.close()
    (a50, b50), (a400, b400) = sums
    steps_before = 3 + 5 + 50
    for first, last, before in ((a50, a400, steps_before), (b50, b400, 3 + 50)):
        assert math.isfinite(last)
        late_mean = (last - first) / 350
        assert late_mean < first / before - 0.2  # it learns: later steps have lower loss


@cuda_test
def test_graphed_steps_draw_from_their_own_rng():
    """Two steps seeded alike draw the same numbers, replayed interleaved on two streams, and
    successive replays draw new ones: their RNG states are their own, not the default's."""
    before = torch.cuda.get_rng_state()
    outs, steps = [], []
    for _ in range(2):
        out = torch.zeros(1000, device="cuda")
        dummy = torch.zeros(1, device="cuda")
        steps.append(GraphedStep(lambda out=out: out.copy_(torch.rand(1000, device="cuda")), (dummy,),
                                 keep=(out,), seed=7))
        outs.append(out)
    draws = [[], []]
    for k, step in enumerate(steps):
        step.run_eager((dummy,))
        draws[k].append(outs[k].clone())
        step.capture()
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    for _ in range(5):
        for k, step in enumerate(steps):
            step.replay(stream=streams[k])
            with torch.cuda.stream(streams[k]):
                draws[k].append(outs[k].clone())
    torch.cuda.synchronize()
    for step in steps:
        step.close()
    for x, y in zip(*draws):
        assert torch.equal(x, y)
    assert not torch.equal(draws[0][1], draws[0][2])
    assert torch.equal(torch.cuda.get_rng_state(), before)


@cuda_test
def test_memory_stays_bounded_over_60_captures(cuda_data, monkeypatch):
    """A closed graph's pool is only freeable: once the process holds more than RELEASE_SHARE
    of the GPU (here about 2 GiB) the cache is emptied, so 60 captures in one process stay
    under that plus a graph, where they would otherwise pile up."""
    limit = 2 * 2**30
    monkeypatch.setattr(cuda_graph, "RELEASE_SHARE", limit / torch.cuda.get_device_properties(0).total_memory)
    x, y = next(cuda_data[0].batches(1024, torch.Generator().manual_seed(0), augment=False))
    batch = (x.contiguous(memory_format=torch.channels_last), y)
    reserved = []
    for k in range(60):
        step, loss_sum = graphed_candidate(small_net(k), seed=k, batch=1024)
        for _ in range(3):
            step.run_eager(batch)
        step.capture()
        step.replay(batch)
        assert math.isfinite(loss_sum.item())
        step.close()
        reserved.append(torch.cuda.memory_reserved())
    assert max(reserved) <= limit + 2 * reserved[0], [round(r / 2**20) for r in reserved]


@cuda_test
def test_evonas_train_captures_once_and_draws_new_drop_path_masks_each_epoch(fashion, monkeypatch):
    captures, real = [], GraphedStep.capture
    monkeypatch.setattr(GraphedStep, "capture", lambda self: (captures.append(1), real(self))[1])
    masks, trainer = drop_path_masks_per_epoch(splits(fashion, 256, 64, device="cuda")[0], "cuda")
    assert trainer.path == "graph" and len(captures) == 1, trainer.fallback_reason
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(masks, 2))
    assert 0.35 < torch.cat(masks).float().mean() < 0.65  # p = 0.5


# ---------------------------------------------------------------- failures that end a process

CUDA_FAULTS = [
    RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously "
                 "reported at some other API call, so the stacktrace below might be incorrect.\nFor debugging "
                 "consider passing CUDA_LAUNCH_BLOCKING=1"),
    RuntimeError("CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` to enable "
                 "device-side assertions."),
    RuntimeError("CUDA error: unspecified launch failure"),
    RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
    RuntimeError("CUDA error: misaligned address"),
]
NOT_FATAL = [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                                "139.72 GiB of which 1.03 GiB is free."),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (128x10 and 12x10)"),
    ValueError("CUDA error: a ValueError is ours, not the runtime's"),
    TrainingFailed("nan/inf loss at step 3"),
]


@pytest.mark.parametrize("err", CUDA_FAULTS, ids=lambda e: str(e).split("\n")[0][:30])
def test_cuda_errors_that_poison_the_context_are_told_apart(err):
    from evo_nas.evaluate.evaluator import context_lost

    assert context_lost(err)
    try:  # raised while handling one, anything is fatal too
        try:
            raise err
        except RuntimeError:
            raise KeyError("cleanup failed")  # noqa: B904
    except KeyError as later:
        assert context_lost(later)


@pytest.mark.parametrize("err", NOT_FATAL, ids=lambda e: str(e)[:30])
def test_out_of_memory_and_other_errors_are_failed_candidates(err):
    from evo_nas.evaluate.evaluator import context_lost

    assert not context_lost(err)


@pytest.mark.skipif(not hasattr(torch, "AcceleratorError"), reason="torch.AcceleratorError is torch 2.8 on")
def test_an_accelerator_error_is_fatal_unless_out_of_memory():
    from evo_nas.evaluate.evaluator import context_lost

    assert context_lost(torch.AcceleratorError("CUDA error: an illegal instruction was encountered"))
    assert not context_lost(torch.AcceleratorError("CUDA error: out of memory"))


def test_the_evaluator_raises_device_lost_for_a_poisoned_context_and_records_the_rest():
    from evo_nas.errors import DeviceLost
    from evo_nas.evaluate.engine import run_to_end
    from tests.fakes import Script, ScriptedEvaluator

    evaluator = ScriptedEvaluator()
    with pytest.raises(DeviceLost) as caught:
        run_to_end(evaluator.begin(Script(7, raises=CUDA_FAULTS[1])))
    lost = caught.value
    assert "evaluation 7" in str(lost) and "\n" not in str(lost)
    assert lost.result.status.value == "failed" and "device-side assert triggered" in lost.result.error
    assert lost.result.device == "cpu" and lost.result.wall_time >= 0
    failed = evaluator(Script(8, raises=NOT_FATAL[0]))
    assert failed.status.value == "failed" and failed.error == "out of memory"
    assert pickle.loads(pickle.dumps(lost)).result == lost.result


# ---------------------------------------------------------------- candidates interleaved in one process

class InFlightTrainings:
    """What interleave() steps: begin(task, stream) is a proxy training of the network
    `task.make()` builds (its result, or the TrainingFailed reason)."""

    def __init__(self, data, cfg: TrainConfig, device: str = "cpu"):
        self.data, self.cfg, self.device = data, cfg, device

    def begin(self, task, stream=None):
        from evo_nas.evaluate.engine import proxy_training

        model = task.make()
        cfg = dataclasses.replace(self.cfg, **task.train)
        try:
            r = yield from proxy_training(model, *self.data, cfg, self.device, task.seed, stream=stream)
        except TrainingFailed as failure:
            return failure.reason
        return r

    def alone(self, task):
        from evo_nas.evaluate.engine import run_to_end

        return run_to_end(self.begin(task))


@dataclasses.dataclass(frozen=True)
class Candidate:
    make: object
    seed: int = 0
    train: dict = dataclasses.field(default_factory=dict)


def same(a, b) -> bool:
    """Equal trainings: the same numbers (timings aside), or the same failure."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return (a.val_accuracy, a.train_loss, a.steps, a.path, a.fallback_reason) == \
        (b.val_accuracy, b.train_loss, b.steps, b.path, b.fallback_reason)


@pytest.mark.slow
def test_candidates_in_flight_give_what_each_gives_alone_nan_and_time_limit_too(cpu_data):
    """On the CPU (streams None) three trainings interleaved give bit for bit what each gives
    alone; a NaN fails its own candidate at its step; and a time limit counts a candidate's
    own steps, not those of a slow candidate beside it (1.5 s a step: from its start, the
    first candidate's wall time passes its 4 s limit in its third step)."""
    from evo_nas.evaluate.inflight import run_in_flight

    runner = InFlightTrainings(cpu_data, TrainConfig(epochs=1, batch_size=500, bn_recalibration=500))
    tasks = [Candidate(lambda: small_net(0, dropout=0.0), seed=1, train={"time_limit": 4.0}),
             Candidate(lambda: NanAfter(small_net(1, dropout=0.0), after=2), seed=2),
             Candidate(functools.partial(SlowNet, 1.5), seed=3)]
    alone = [runner.alone(t) for t in tasks]
    together = run_in_flight(runner, tasks, [None] * 3)
    assert alone[1] == "nan/inf loss at step 3" and together[1] == alone[1]
    assert all(same(a, b) for a, b in zip(alone, together))
    assert together[0].steps == 4  # 2000 images, batch 500: the whole epoch within its own 4 s


class SlowNet(nn.Module):
    """small_net, and `seconds` of sleep in every training forward: a slow candidate."""

    def __init__(self, seconds: float):
        super().__init__()
        self.inner, self.seconds = small_net(2, dropout=0.0), seconds

    def forward(self, x):
        if self.training:
            time.sleep(self.seconds)
        return self.inner(x)


@pytest.mark.slow
def test_a_failed_capture_beside_replaying_graphs_falls_back_alone(monkeypatch, cpu_data):
    """The graph path's orchestration on the CPU (FakeGraphedStep): one candidate's capture
    fails while two others replay theirs; it restarts eagerly from its initial state, and
    every candidate ends as it does alone."""
    from evo_nas.evaluate.inflight import run_in_flight

    graph_path_on_cpu(monkeypatch)
    runner = InFlightTrainings(cpu_data, TrainConfig(epochs=1, batch_size=250, bn_recalibration=500))

    def refusing():
        model = small_net(4, dropout=0.0)
        model.refuses_capture = True
        return model

    tasks = [Candidate(lambda: small_net(3, dropout=0.0), seed=1), Candidate(refusing, seed=2),
             Candidate(lambda: small_net(5, dropout=0.0), seed=3)]
    alone = [runner.alone(t) for t in tasks]
    together = run_in_flight(runner, tasks, [None] * 3)
    assert [r.path for r in together] == ["graph", "eager", "graph"]  # (a CPU result has no fallback_reason)
    assert all(same(a, b) for a, b in zip(alone, together))


def test_an_image_budget_sets_the_epochs_whatever_the_split(cpu_data):
    from evo_nas import config as configs
    from evo_nas.evaluate.evaluator import task_epochs

    assert configs.from_mapping({}, device="cuda").train.train_images == configs.PRESETS["cuda"]["train_images"]
    assert configs.from_mapping({"epochs": 2}, device="cuda").train.train_images is None  # epochs given: no budget
    assert configs.from_mapping({}, device="cpu").train.train_images is None
    budget = TrainConfig(epochs=1.0, train_images=30720)
    assert task_epochs(budget, 1.0, 54000) == pytest.approx(30720 / 54000)
    assert task_epochs(budget, 0.25, 54000) == pytest.approx(0.25 * 30720 / 54000)  # a rung's share of the budget
    assert task_epochs(TrainConfig(epochs=2.0), 2.0, 999) == 2.0
    epochs = task_epochs(TrainConfig(train_images=1000), 1.0, len(cpu_data[0]))
    result = train(small_net(), *cpu_data, TrainConfig(epochs=epochs, batch_size=250, bn_recalibration=250), "cpu", 0)
    assert result.steps == 4  # 1,000 images in batches of 250


# ---------------------------------------------------------------- CUDA: candidates in flight on streams

def in_flight_on_cuda(cuda_data, tasks, cfg=None):
    from evo_nas.evaluate.inflight import run_in_flight

    runner = InFlightTrainings(cuda_data, cfg or TrainConfig(epochs=2, batch_size=128), device="cuda")
    alone = [runner.alone(t) for t in tasks]
    together = run_in_flight(runner, tasks, [torch.cuda.Stream() for _ in tasks])
    torch.cuda.synchronize()
    return alone, together


def close(a, b) -> bool:
    """The same training within CUDA's nondeterminism, or the same failure."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.path == b.path and abs(a.val_accuracy - b.val_accuracy) < 0.03 and abs(a.train_loss - b.train_loss) < 0.1


@cuda_test
def test_in_flight_on_streams_each_candidate_gives_what_it_gives_alone(cuda_data):
    tasks = [Candidate(functools.partial(small_net, i, dropout=0.0), seed=i) for i in range(3)]
    alone, together = in_flight_on_cuda(cuda_data, tasks)
    assert all(r.path == "graph" and math.isfinite(r.train_loss) for r in together), together
    assert all(close(a, b) for a, b in zip(alone, together)), (alone, together)


@cuda_test
def test_a_failed_capture_while_other_graphs_replay(cuda_data):
    """Candidate 1 fails its capture (and falls back to eager) while candidates 0 and 2 have
    their graphs captured and replaying on their streams: nothing leaks between them."""
    tasks = [Candidate(lambda: small_net(0, dropout=0.0), seed=0),
             Candidate(lambda: FailsWhenCaptured("raise"), seed=1),
             Candidate(lambda: small_net(2, dropout=0.0), seed=2)]
    alone, together = in_flight_on_cuda(cuda_data, tasks)
    assert [r.path for r in together] == ["graph", "eager", "graph"]
    assert "refuses capture" in together[1].fallback_reason
    assert all(close(a, b) for a, b in zip(alone, together)), (alone, together)


@cuda_test
def test_nan_and_time_limit_under_interleaving(cuda_data):
    """A NaN fails its candidate at its own check (step 100: checks are 50 steps apart), a tiny
    time limit its own candidate at the first check, and a neighbour trains on unharmed."""
    tasks = [Candidate(lambda: NanAfter(small_net(0, dropout=0.0), after=60), seed=0),
             Candidate(lambda: small_net(1, dropout=0.0), seed=1, train={"time_limit": 1e-6}),
             Candidate(lambda: small_net(2, dropout=0.0), seed=2)]
    alone, together = in_flight_on_cuda(cuda_data, tasks, TrainConfig(epochs=3, batch_size=128))
    assert together[0] == alone[0] == "nan/inf loss in steps 51-100"
    assert together[1] == alone[1] == "time limit 1e-06s exceeded after 50 steps"
    assert close(alone[2], together[2]) and together[2].path == "graph"


@cuda_test
def test_after_a_replay_on_another_stream_the_current_stream_waits_for_it():
    """replay(stream=S) orders the caller's stream after the replay: reading the output on the
    current stream, without any sync, sees the whole replay."""
    x = torch.ones(1 << 20, device="cuda")
    out = torch.zeros_like(x)

    def step():
        out.copy_(x)
        for _ in range(200):  # long enough that a read not ordered after it would see it unfinished
            out.mul_(1.001)

    graphed = GraphedStep(step, (x,), keep=(out,))
    graphed.run_eager((x,))
    graphed.capture()
    side = torch.cuda.Stream()
    expected = torch.full_like(x, 1.001 ** 200)
    for _ in range(5):
        out.zero_()
        graphed.replay(stream=side)
        assert torch.allclose(out.clone(), expected, rtol=1e-4)  # the clone runs on the current stream
    graphed.close()


@cuda_test
def test_cudnn_benchmark_is_set_from_the_config_and_left_alone_without_one(cuda_data):
    before = torch.backends.cudnn.benchmark
    try:
        for flag in (True, False):
            Trainer(small_net(), cuda_data[0], TrainConfig(cudnn_benchmark=flag), "cuda", 0)
            assert torch.backends.cudnn.benchmark is flag
        torch.backends.cudnn.benchmark = True
        Trainer(small_net(), cuda_data[0], TrainConfig(), "cuda", 0)
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before


def test_the_cpu_allocator_running_out_is_out_of_memory_too():
    from evo_nas.evaluate.evaluator import context_lost, describe_error

    try:  # a real allocation the CPU allocator refuses: a petabyte
        torch.empty(1 << 50, dtype=torch.uint8)
    except RuntimeError as err:
        assert describe_error(err) == "out of memory" and not context_lost(err)
    else:
        pytest.fail("a petabyte was allocated")
