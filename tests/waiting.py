"""Waiting for a process to get somewhere, on what it writes and never on the clock: a loaded
machine only makes the wait longer. The bound is there to catch a hang, nothing else."""

import time
from pathlib import Path

HANG = 1800  # seconds without reaching the mark: something hangs


def wait_for_lines(journal: Path, count: int, proc=None, hang: float = HANG) -> int:
    """Until `journal` has at least `count` lines; fails if `proc` ends first or on a hang."""
    deadline = time.monotonic() + hang
    while True:
        lines = len(journal.read_text().splitlines()) if journal.exists() else 0
        if lines >= count:
            return lines
        assert proc is None or proc.poll() is None, f"the run ended after {lines} lines, before {count}"
        assert time.monotonic() < deadline, f"no progress to {count} lines in {hang} s: a hang"
        time.sleep(0.02)


def wait_for(mark, proc=None, hang: float = HANG) -> None:
    """Until `mark()` is true; fails if `proc` ends first or on a hang."""
    deadline = time.monotonic() + hang
    while not mark():
        assert proc is None or proc.poll() is None, "the process ended before the mark"
        assert time.monotonic() < deadline, f"no progress to the mark in {hang} s: a hang"
        time.sleep(0.02)
