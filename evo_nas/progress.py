"""What a run shows while it works: a rich progress bar on a terminal, a plain line per evaluation
elsewhere: generation, evaluations, cache hits, best accuracy, front size, elapsed time and an ETA
from the evaluations so far. The display only reads the run's state (a runner.Job). `line` is
every command's plain progress line, `duration` evonas's one way of writing a span of time.
"""

from __future__ import annotations

import math
import statistics
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
            self.console.print(line(fraction, 1.0, time.monotonic() - self._started, self._line(job),
                                    self._done_at_start), soft_wrap=True)

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


def _in_flight(steps: dict[int, tuple[int, int]]) -> str:
    """'#12 40/75, #13 12/75': each candidate in flight and its steps."""
    return ", ".join(f"#{cid} {done}/{total}" for cid, (done, total) in sorted(steps.items()))


def summary(history: History) -> dict:
    """Best accuracy and failures over every final evaluation so far."""
    evaluations = history.evaluations()
    return {"best_accuracy": max((r.accuracy for r in evaluations if r.ok), default=None),
            "failed": sum(1 for r in evaluations if r.status is Status.FAILED)}


def line(done: float, total: float, elapsed: float, what: str, since: float = 0.0) -> str:
    """One plain progress line: `what`, the share of the work done, the time taken, an ETA.

    `done` and `total`: the work done and planned, in any one unit (trainings, evaluations, a
    fraction of 1); `elapsed`: seconds this process has worked, during which the work went from
    `since` to `done` (a resumed run's ETA extrapolates only what this process did; "-" until
    it did some). line(12, 48, 30.0, "proxy genome 3 seed 1: accuracy 0.8125") is
    "proxy genome 3 seed 1: accuracy 0.8125  25%  elapsed 30.0 s  ETA 1 min 30 s"."""
    eta = elapsed * (total - done) / (done - since) if done > since else None
    return f"{what}  {done / total:.0%}  elapsed {duration(elapsed)}  ETA {duration(eta)}"


def duration(seconds: float | None) -> str:
    """A span of time as people read it: 3.2 s, 4 min 12 s, 2 h 05 min; "-" when not known."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def predictor_line(history: History, generation: int) -> str | None:
    """How the predictor ranked `generation`'s children (None: it did not screen them)."""
    found = predictor.generations(r for r in history.finals() if r.generation == generation)
    if not found:
        return None
    g = found[0]
    cost = (f"; screening {g.screen_s:.3g} s per child bred, training {g.train_s:.3g} s per child trained"
            if g.screen_s is not None and g.train_s is not None else "")
    said = "n/a" if math.isnan(g.tau) else f"{g.tau:+.2f}"
    return f"gen {generation}  predictor: Kendall tau {said} over {g.children} children{cost}"


def noise_line(cfg) -> str:
    """What the proxy's accuracy differences mean, where evonas has measured it (noise.py)."""
    return noise.statement(configs.flat(cfg), cfg.run.runs_dir, cfg.search.repeats)


class StudyProgress:
    """`evonas study`'s progress: a line per stage (each search, the final trainings), each with the
    share of the study's planned work done and an ETA; every search shows its own lines under
    its stage (a plain Progress). The work is counted in evaluations at the proxy: a final
    training weighs as many as it trains images (final images / proxy images), refined from the
    seconds measured once one has finished."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.started = time.monotonic()
        self.evaluation_seconds: list[float] = []
        self.final_seconds: list[float] = []
        self.done_units = self.total_units = 0.0
        self.weight = 20.0  # a final training, in proxy evaluations, until measured

    def start(self, plan) -> None:
        s = plan.settings
        self.per_search = int(plan.options["budget"])
        published = 3 if plan.options.get("space", "cells") == "cells" else 0
        finals = len(plan.searches()) * s.returns + (1 + published if s.baselines else 0)
        self.finals_planned = finals
        self.total_units = len(plan.searches()) * self.per_search + finals * self.weight
        self.console.print(f"[bold]evonas study[/] {', '.join(plan.arms)} x {s.seeds} seeds, {self.per_search} "
                           f"evaluations a search, then about {finals} final trainings -> {plan.path}")

    def for_search(self) -> Progress:
        return _StudySearch(self, console=self.console, live=False)

    def stage(self, text: str, planned: int | None = None) -> None:
        self.console.print(f"[bold]study[/] {self._fraction():.0%} done, ETA {duration(self._eta())}: {text}",
                           highlight=False)

    def done(self, text: str, seconds: float) -> None:
        pass

    def evaluation(self, record) -> None:
        if record.trained and record.wall_time:
            self.evaluation_seconds.append(record.wall_time)
        self.done_units += record.trained

    def final_done(self, record) -> None:
        if record.wall_time:
            self.final_seconds.append(record.wall_time)
        if self.evaluation_seconds and self.final_seconds:
            self.weight = statistics.fmean(self.final_seconds) / statistics.fmean(self.evaluation_seconds)
        self.done_units += self.weight
        accuracy = f"test {record.test_accuracy:.4f}" if record.ok else f"{record.status}: {record.error}"
        self.console.print(f"  final training #{record.id} ({record.operator}): {accuracy}  "
                           f"[study {self._fraction():.0%}, ETA {duration(self._eta())}]", highlight=False)

    def _fraction(self) -> float:
        return min(1.0, self.done_units / self.total_units) if self.total_units else 0.0

    def _eta(self) -> float | None:
        f = self._fraction()
        return (time.monotonic() - self.started) * (1 - f) / f if f > 0 else None

    def stop(self) -> None:
        pass


class _StudySearch(Progress):
    """A search's plain progress lines, which also count towards its study's."""

    def __init__(self, study: StudyProgress, **kw):
        super().__init__(**kw)
        self.study = study

    def evaluation_done(self, job, record) -> None:
        self.study.evaluation(record)
        super().evaluation_done(job, record)


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
