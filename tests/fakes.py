"""Test doubles shared by several test modules."""

import functools
import os
import time
from dataclasses import dataclass, replace

import torch

from evo_nas.config import DataConfig, Skeleton, TrainConfig
from evo_nas.evaluate.cuda_graph import CaptureError
from evo_nas.evaluate.evaluator import EvalSettings, Evaluator
from evo_nas.records import Result, Status


class FakeGraphedStep:
    """cuda_graph.GraphedStep's protocol, run eagerly on the CPU (there is no CUDA graph here):
    the CUDA-graph orchestration can then be tested on the CPU. Capture can be told to fail,
    for every step (fail_capture) or for a model with `refuses_capture = True` in `keep`;
    captures and closes are counted. With own_rng the step draws from a CPU generator state of
    its own, seeded with `seed`, as a GraphedStep draws from a CUDA one (a new step seeded
    alike would draw the same numbers again); else from torch's global RNG, as eager steps do."""

    fail_capture = False
    own_rng = False
    captures = 0
    closed = 0

    def __init__(self, step, inputs, keep=(), seed=None, **options):
        self.step, self.inputs = step, inputs
        self.refuses = any(getattr(k, "refuses_capture", False) for k in keep)
        self.rng = torch.Generator().manual_seed(seed or 0).get_state()

    def _run(self, batch):
        for static, value in zip(self.inputs, batch):
            static.copy_(value)
        if not self.own_rng:
            self.step()
            return
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng)
            self.step()
            self.rng = torch.get_rng_state()

    run_eager = replay = _run

    def capture(self):
        FakeGraphedStep.captures += 1
        if self.fail_capture or self.refuses:
            raise CaptureError("capture failed (pretend)")

    def close(self):
        FakeGraphedStep.closed += 1


def fake_graphed_step(step, batch_shape, device, dtype=torch.float32, memory_format=torch.channels_last, keep=(),
                      seed=None, stream=None):
    """cuda_graph.graphed_step with a FakeGraphedStep."""
    x = torch.empty(tuple(batch_shape), dtype=dtype, device=device, memory_format=memory_format)
    y = torch.empty(batch_shape[0], dtype=torch.long, device=device)
    return FakeGraphedStep(functools.partial(step, x, y), (x, y), keep=keep, seed=seed)


def graph_path_on_cpu(monkeypatch, fail: bool = False, own_rng: bool = False) -> None:
    """From now on the Trainer takes its CUDA-graph path on the CPU: FakeGraphedStep (drawing
    from its own RNG state with own_rng), plain optimizers."""
    from evo_nas.evaluate import engine

    plain = engine.make_optimizer
    monkeypatch.setattr(engine, "make_optimizer", lambda *a, capturable=False, **k: plain(*a, capturable=False, **k))
    monkeypatch.setattr(engine, "choose_path", lambda *a, **k: ("graph", ""))
    monkeypatch.setattr(engine, "graphed_step", fake_graphed_step)
    monkeypatch.setattr(FakeGraphedStep, "fail_capture", fail)
    monkeypatch.setattr(FakeGraphedStep, "own_rng", own_rng)
    monkeypatch.setattr(FakeGraphedStep, "captures", 0)


@dataclass(frozen=True)
class Script:
    """A scripted evaluation for ScriptedEvaluator: `steps` steps of `step_seconds` each (the
    first one also sleeps `hang` seconds: a hung step), then `raises` if given."""

    id: int
    steps: int = 2
    step_seconds: float = 0.0
    hang: float = 0.0
    raises: BaseException | None = None


class ScriptedEvaluator(Evaluator):
    """The real Evaluator.begin (failures become results, a CUDA error that poisons the context
    raises DeviceLost) around scripted evaluations instead of trainings, for the backends'
    tests. A result's `path` says which process ran it and the most candidates it saw in
    flight there ("pid=123 peers=2"); its accuracy is id / 100."""

    active = 0  # scripted evaluations in flight in this process

    def __init__(self, device: str = "cpu"):
        super().__init__(EvalSettings(DataConfig(), 0, Skeleton(), TrainConfig(), device=device))

    def _evaluate(self, task: Script, stream):
        ScriptedEvaluator.active += 1
        peers = ScriptedEvaluator.active
        try:
            time.sleep(task.hang)
            for _ in range(task.steps):
                time.sleep(task.step_seconds)
                peers = max(peers, ScriptedEvaluator.active)
                yield
            if task.raises is not None:
                raise task.raises
        finally:
            ScriptedEvaluator.active -= 1
        return Result(Status.OK, accuracy=task.id / 100, path=f"pid={os.getpid()} peers={peers}")


def peers(result: Result) -> tuple[int, int]:
    """(pid, most candidates in flight) from a ScriptedEvaluator result."""
    pid, count = (int(part.split("=")[1]) for part in result.path.split())
    return pid, count


class FaultOnCuda(Evaluator):
    """The real Evaluator, except that task `bad` trains nothing: after a few steps it indexes
    an embedding out of range on the GPU, a device-side assert, which leaves the process's CUDA
    context unusable; the error may surface in another candidate's step."""

    def __init__(self, settings: EvalSettings, bad: int):
        super().__init__(settings)
        self.bad = bad

    def on(self, device: str) -> "FaultOnCuda":
        return FaultOnCuda(replace(self.settings, device=device), self.bad)

    def _evaluate(self, task, stream):
        if task.id != self.bad:
            return (yield from super()._evaluate(task, stream))
        for _ in range(3):
            yield
        weight = torch.zeros(10, 4, device=self.settings.device)
        torch.nn.functional.embedding(torch.tensor([12], device=self.settings.device), weight)
        torch.cuda.synchronize()
        return Result(Status.OK)  # not reached



