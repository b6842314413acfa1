"""What a run shows while it works: a rich progress line on a terminal, plain lines elsewhere.

Generation, evaluations, cache hits, best accuracy, front size, elapsed time and ETA. The
display only reads the search's state; it never changes it.
"""

from __future__ import annotations

import sys
import time

from evo_nas import pareto


class Progress:
    def __init__(self, console=None, live: bool | None = None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self._bar = None
        self._started = time.monotonic()
        self._state_generation = 0
        self._front = 0  # front size, recomputed once per generation (sorting is not free)

    # -- hooks called by the runner ------------------------------------------------------
    def start(self, search, state) -> None:
        self._started = time.monotonic()
        self._done_at_start = search.progress_fraction(state) if state is not None else 0.0
        self._state_generation = state.generation if state is not None else 0
        self.console.print(f"[bold]evonas[/] {search.cfg.algorithm} on {search.cfg.space} / {search.cfg.dataset}"
                           f" ({search.cfg.device}) -> {search.run.path}")
        if self.live:
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False)
            self._task = self._bar.add_task(self._line(search), total=1.0, completed=self._done_at_start)
            self._bar.start()

    def evaluation_done(self, search, record: dict) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(search))

    def generation_done(self, search, state) -> None:
        self._state_generation = state.generation
        self._front = summary(search.records, search.settings.objectives)["front"]
        fraction = search.progress_fraction(state)
        if self._bar is not None:
            self._bar.update(self._task, description=self._line(search), completed=fraction)
        else:
            elapsed = time.monotonic() - self._started
            self.console.print(f"{self._line(search)}  elapsed {_clock(elapsed)}  ETA {_clock(self._eta(fraction))}",
                               soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- text ----------------------------------------------------------------------------
    def _line(self, search) -> str:
        ok = [r["accuracy"] for r in search.records if r.get("status") == "ok"]
        failed = sum(1 for r in search.records if r.get("status") == "failed" and r.get("cache_of") is None)
        best = f"{max(ok):.4f}" if ok else "-"
        return (f"gen {self._state_generation}  evals {search.used()}  cache hits {search.cache_hits}  "
                f"failed {failed}  best acc {best}  front {self._front}")

    def _eta(self, fraction: float) -> float:
        gained = fraction - self._done_at_start
        if gained <= 0:
            return float("nan")
        return (time.monotonic() - self._started) * (1 - fraction) / gained


def summary(records: list[dict], objectives) -> dict:
    """Best accuracy, front size and failures over every final evaluation so far."""
    final = {}
    for r in records:
        if r.get("cache_of") is None:
            final[r["id"]] = r
    ok = [r for r in final.values() if r.get("status") == "ok"]
    vectors = [pareto.vector(r, objectives) for r in ok]
    return {"best_accuracy": max((r["accuracy"] for r in ok), default=None),
            "front": len(pareto.first_front(vectors)),
            "failed": sum(1 for r in final.values() if r.get("status") == "failed")}


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan: not known yet
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def quiet() -> bool:
    return not sys.stderr.isatty()
