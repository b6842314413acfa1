"""Test doubles shared by several test modules."""

from evo_nas.evaluate.train import CaptureError


class FakeGraphedStep:
    """train.py's GraphedStep protocol, run eagerly on the CPU (there is no CUDA graph here):
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
