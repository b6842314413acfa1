"""Test doubles shared by several test modules."""

import functools

import torch

from evo_nas.evaluate.cuda_graph import CaptureError


class FakeGraphedStep:
    """cuda_graph.GraphedStep's protocol, run eagerly on the CPU (there is no CUDA graph here):
    the CUDA-graph orchestration can then be tested on the CPU. Capture can be told to fail;
    captures and closes are counted."""

    fail_capture = False
    captures = 0
    closed = 0

    def __init__(self, step, inputs, **options):
        self.step, self.inputs = step, inputs

    def _run(self, batch):
        for static, value in zip(self.inputs, batch):
            static.copy_(value)
        self.step()

    run_eager = replay = _run

    def capture(self):
        FakeGraphedStep.captures += 1
        if self.fail_capture:
            raise CaptureError("capture failed (pretend)")

    def close(self):
        FakeGraphedStep.closed += 1


def fake_graphed_step(step, batch_shape, device, dtype=torch.float32, memory_format=torch.channels_last, keep=(),
                      seed=None, stream=None):
    """cuda_graph.graphed_step with a FakeGraphedStep."""
    x = torch.empty(tuple(batch_shape), dtype=dtype, device=device, memory_format=memory_format)
    y = torch.empty(batch_shape[0], dtype=torch.long, device=device)
    return FakeGraphedStep(functools.partial(step, x, y), (x, y))


def graph_path_on_cpu(monkeypatch, fail: bool = False) -> None:
    """From now on the Trainer takes its CUDA-graph path on the CPU: FakeGraphedStep, plain
    optimizers."""
    from evo_nas.evaluate import engine

    plain = engine.make_optimizer
    monkeypatch.setattr(engine, "make_optimizer", lambda *a, capturable=False, **k: plain(*a, capturable=False, **k))
    monkeypatch.setattr(engine, "choose_path", lambda *a, **k: ("graph", ""))
    monkeypatch.setattr(engine, "graphed_step", fake_graphed_step)
    monkeypatch.setattr(FakeGraphedStep, "fail_capture", fail)
    monkeypatch.setattr(FakeGraphedStep, "captures", 0)
