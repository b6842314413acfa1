"""What a run shows while it works: a rich progress line on a terminal, plain lines elsewhere.

Generation, evaluations, cache hits, best accuracy, front size, elapsed time and ETA. The
display only reads the run's state (a runner.Job); it never changes it.
"""

from __future__ import annotations

import time

from evo_nas.records import History, Status


class Progress:
    def __init__(self, console=None, live: bool | None = None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self._bar = None
        self._started = time.monotonic()
        self._front = 0  # front size, recomputed once per generation (sorting is not free)

    # -- hooks called by the runner ------------------------------------------------------
    def start(self, job) -> None:
        self._started = time.monotonic()
        self._done_at_start = job.progress_fraction(job.state) if job.state is not None else 0.0
        cfg = job.cfg
        self.console.print(f"[bold]evonas[/] {cfg.search.algorithm} on {cfg.space.space} / {cfg.data.dataset}"
                           f" ({cfg.device}) -> {job.run.path}")
        if self.live:
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False)
            self._task = self._bar.add_task(self._line(job), total=1.0, completed=self._done_at_start)
            self._bar.start()

    def evaluation_done(self, job, record) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(job))

    def generation_done(self, job, state) -> None:
        self._front = len(job.history.front(job.cfg.search.objectives))
        fraction = job.progress_fraction(state)
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(job), completed=fraction)
        else:
            elapsed = time.monotonic() - self._started
            self.console.print(f"{self._line(job)}  elapsed {_clock(elapsed)}  ETA {_clock(self._eta(fraction))}",
                               soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- text ----------------------------------------------------------------------------
    def _line(self, job) -> str:
        s = summary(job.history)
        best = f"{s['best_accuracy']:.4f}" if s["best_accuracy"] is not None else "-"
        return (f"gen {job.generation}  evals {job.search.archive.evaluated}  cache hits {job.history.cache_hits()}  "
                f"failed {s['failed']}  best acc {best}  front {self._front}")

    def _eta(self, fraction: float) -> float:
        gained = fraction - self._done_at_start
        if gained <= 0:
            return float("nan")
        return (time.monotonic() - self._started) * (1 - fraction) / gained


def summary(history: History) -> dict:
    """Best accuracy and failures over every final evaluation so far."""
    evaluations = history.evaluations()
    return {"best_accuracy": max((r.accuracy for r in evaluations if r.ok), default=None),
            "failed": sum(1 for r in evaluations if r.status is Status.FAILED)}


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan: not known yet
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
