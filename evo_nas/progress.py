"""What a run shows while it works: a rich progress bar on a terminal, a plain line per evaluation
elsewhere: generation, evaluations, cache hits, best accuracy, front size, elapsed time and an ETA
from the evaluations so far. The display only reads the run's state (a runner.Job).
"""

from __future__ import annotations

import math
import time

from evo_nas import config as configs
from evo_nas import noise, predictor
from evo_nas.records import History, Status

STEPS_LINE_EVERY = 30.0  # seconds between plain "training #id step/steps" lines (not a terminal)


class Progress:
    def __init__(self, console=None, live: bool | None = None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self._bar = None
        self._started = time.monotonic()
        self._front = 0  # front size, recomputed once per generation (sorting is not free)
        self._steps: dict[int, tuple[int, int]] = {}  # candidate id -> (steps done, steps), in flight
        self._told = 0.0  # when a plain line last told the steps

    # -- hooks called by the runner ------------------------------------------------------
    def start(self, job) -> None:
        self._started = self._told = time.monotonic()
        self._done_at_start = self._fraction(job)
        self._front = len(job.history.front(job.cfg.search.objectives))
        cfg = job.cfg
        self.console.print(f"[bold]evonas[/] {cfg.search.algorithm} on {cfg.space.space} / {cfg.data.dataset}"
                           f" ({cfg.device}) -> {job.run.path}")
        self.console.print(f"  {noise_line(cfg)}", soft_wrap=True, highlight=False)
        if self.live:
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False)
            self._task = self._bar.add_task(self._line(job), total=1.0, completed=self._done_at_start)
            self._bar.start()

    def steps_done(self, job, steps: dict[int, tuple[int, int]]) -> None:
        """How far the candidates in flight are: {candidate id: (steps done, steps)}."""
        self._steps = dict(steps)
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(job), completed=self._fraction(job))
        elif time.monotonic() - self._told >= STEPS_LINE_EVERY:
            self._told = time.monotonic()
            self.console.print(f"  training {_in_flight(self._steps)}", soft_wrap=True)

    def evaluation_done(self, job, record) -> None:
        self._front = len(job.history.front(job.cfg.search.objectives))
        self._steps.pop(record.id, None)
        self._told = time.monotonic()
        fraction = self._fraction(job)
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(job), completed=fraction)
        else:
            elapsed = time.monotonic() - self._started
            self.console.print(f"{self._line(job)}  elapsed {_clock(elapsed)}  ETA {_clock(self._eta(fraction))}",
                               soft_wrap=True)

    def generation_done(self, job, state) -> None:
        self._front = len(job.history.front(job.cfg.search.objectives))
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(job), completed=self._fraction(job))
        said = predictor_line(job.history, state.generation) if job.cfg.search.predictor else None
        if said is not None:
            self.console.print(f"  {said}", soft_wrap=True, highlight=False)

    def _fraction(self, job) -> float:
        """The share of the planned work done: generations or budget, or evaluations against the
        plan, counting the steps of the candidates in flight (so it moves within a candidate)."""
        partial = sum(done / max(total, 1) for done, total in self._steps.values())
        evaluations = (job.history.trained() + partial) / max(job.planned, 1)
        return min(1.0, max(job.progress_fraction(job.state), evaluations))

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- text ----------------------------------------------------------------------------
    def _line(self, job) -> str:
        s = summary(job.history)
        best = f"{s['best_accuracy']:.4f}" if s["best_accuracy"] is not None else "-"
        generation = max((r.generation for r in job.history.records), default=0)
        line = (f"gen {generation}  evals {job.history.trained()}  cache hits {job.history.cache_hits()}  "
                f"failed {s['failed']}  best acc {best}  front {self._front}")
        return f"{line}  training {_in_flight(self._steps)}" if self._steps else line

    def _eta(self, fraction: float) -> float:
        gained = fraction - self._done_at_start
        if gained <= 0:
            return float("nan")
        return (time.monotonic() - self._started) * (1 - fraction) / gained


def _in_flight(steps: dict[int, tuple[int, int]]) -> str:
    """'#12 40/75, #13 12/75': each candidate in flight and its steps."""
    return ", ".join(f"#{cid} {done}/{total}" for cid, (done, total) in sorted(steps.items()))


def summary(history: History) -> dict:
    """Best accuracy and failures over every final evaluation so far."""
    evaluations = history.evaluations()
    return {"best_accuracy": max((r.accuracy for r in evaluations if r.ok), default=None),
            "failed": sum(1 for r in evaluations if r.status is Status.FAILED)}


def predictor_line(history: History, generation: int) -> str | None:
    """How the predictor ranked `generation`'s children (None: it did not screen them)."""
    records = [r for r in history.finals() if r.generation == generation]
    tau, n = predictor.taus(predictor.pairs(records)).get(generation, (None, 0))
    if tau is None:
        return None
    screen = next((r.screen_s for r in records if r.screen_s is not None), None)
    walls = [r.wall_time for r in records if r.predicted is not None and r.wall_time]
    cost = (f"; screening {screen:.3g} s per child bred, training {sum(walls) / len(walls):.3g} s per child "
            f"trained" if screen is not None and walls else "")
    said = "n/a" if math.isnan(tau) else f"{tau:+.2f}"
    return f"gen {generation}  predictor: Kendall tau {said} over {n} children{cost}"


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan: not known yet
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def noise_line(cfg) -> str:
    """What the proxy's accuracy differences mean, where evonas has measured it (noise.py)."""
    return noise.statement(configs.flat(cfg), cfg.run.runs_dir, cfg.search.repeats)


class EpochBar:
    """`evonas train`'s bar inside an epoch, on a terminal: steps, the epoch's mean loss so far,
    images/s and the epoch's ETA (the epoch lines print above it). Redrawn at most every
    `every` seconds, so that reading the loss (a device sync) costs nothing that matters."""

    def __init__(self, batch_size: int, console=None, every: float = 0.25):
        from rich.console import Console

        self.console, self.batch, self.every = console or Console(stderr=True), batch_size, every
        self._bar = self._task = None
        self._epoch, self._drawn, self._began = 0, 0.0, 0.0

    def __call__(self, epoch: int, epochs: int, done: int, steps: int, loss) -> None:
        now = time.monotonic()
        if epoch != self._epoch:
            self._new_epoch(epoch, epochs, steps, now)
        if done < steps and now - self._drawn < self.every:
            return
        self._drawn = now
        rate = f"{(done - 1) * self.batch / (now - self._began):,.0f}" if done > 1 else "-"  # since step 1 ended
        self._bar.update(self._task, completed=done, loss=f"{loss():.4f}", rate=rate)

    def _new_epoch(self, epoch: int, epochs: int, steps: int, now: float) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}  {task.fields[rate]} images/s  ETA"),
                            TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.start()
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(f"epoch {epoch}/{epochs}", total=steps, loss="-", rate="-")
        self._epoch, self._began = epoch, now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
