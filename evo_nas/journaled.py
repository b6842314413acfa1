"""The one journaled evaluator: requests -> a backend's map -> a Record each -> the journal, and
on resume the journal's records instead of new trainings.   [no torch]

A search, `evonas fidelity` and `evonas study` differ in what they ask, not in how they train,
journal and replay: each hands `Journaled.evaluate` a list of `Request`s (who, which seed, at
which fidelity) and gets a Record for each. A request whose slot (id, rung, repeat, fidelity)
is already in the journal is answered from it (a resumed run); the others are trained by the
backend, journaled as each finishes, and so never trained twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from evo_nas.errors import RunDirError
from evo_nas.genome import Genome
from evo_nas.records import PROXY, History, Record, Result


@dataclass(frozen=True)
class Request:
    """One evaluation to make: an individual (id, genome, key and its lineage) at one rung,
    repeat and fidelity, trained with `seed` for `epochs` (None: its evaluator's). It is also
    what an evaluator is called with (evaluate.evaluator.Evaluator)."""

    id: int
    genome: Genome
    seed: int
    epochs: float | None = None
    rung: int = 0
    key: str = ""
    repeat: int | None = None
    fidelity: str | None = PROXY
    generation: int = 0
    parents: tuple[int, ...] = ()
    operator: str = ""
    predicted: float | None = None  # the predictor's accuracy for it, when it was screened (predictor.py)
    screen_s: float | None = None  # seconds its generation's screening took per child bred

    @property
    def slot(self) -> tuple:
        return self.id, self.rung, self.repeat, self.fidelity

    def record(self, result: Result, cache_of: int | None = None) -> Record:
        return Record(self.id, self.generation, self.genome, self.key, result, self.rung, self.parents,
                      self.operator, cache_of=cache_of, finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      repeat=self.repeat, fidelity=self.fidelity, predicted=self.predicted, screen_s=self.screen_s)


class Journaled:
    """Evaluates requests through `backend`, one evaluator per fidelity (`evaluators`: name ->
    a picklable callable of a Request, such as evaluate.evaluator.Evaluator), appending each
    record to `journal` (a store.RunDir) as it arrives. `replay`: journal records not yet
    asked for, served instead of training. `history` receives every record, replayed or new;
    `on_record(record)` and `on_steps({id: (done, steps)})` tell the progress display."""

    def __init__(self, journal, backend, evaluators: dict, history: History, replay: Iterable[Record] = (),
                 on_record: Callable[[Record], None] | None = None,
                 on_steps: Callable[[dict], None] | None = None):
        self.journal, self.backend, self.evaluators, self.history = journal, backend, evaluators, history
        self.replay = {r.slot: r for r in replay}
        self.on_record, self.on_steps = on_record, on_steps

    def evaluate(self, requests: Sequence[Request]) -> list[Record]:
        """A record for each request, in their order: from the journal where it has one, else trained."""
        records: list[Record | None] = [self.replayed(r) for r in requests]
        for fidelity in dict.fromkeys(r.fidelity for r in requests):
            todo = [i for i, r in enumerate(requests) if records[i] is None and r.fidelity == fidelity]
            for i, record in zip(todo, self._train([requests[i] for i in todo])):
                records[i] = record
        return records

    def add(self, record: Record, write: bool = True) -> None:
        """A record made without training (a cache hit), or one replayed."""
        if write:
            self.journal.append(record)
        self.history.add(record)
        if self.on_record is not None:
            self.on_record(record)

    def replayed(self, request: Request) -> Record | None:
        """The journal's record for this request, if it has one (checked against the request's key)."""
        record = self.replay.pop(request.slot, None)
        if record is None:
            return None
        if record.key != request.key:
            raise RunDirError(f"{self.journal.path}: the journal disagrees with this run at evaluation {request.id} "
                              f"(was evonas or the config changed?); start a new run")
        self.add(record, write=False)
        return record

    def _train(self, requests: list[Request]) -> Iterable[Record]:
        """Train the requests of one fidelity; their records in the requests' order."""
        if not requests:
            return []
        on_steps = None if self.on_steps is None else (
            lambda steps: self.on_steps({requests[i].id: done for i, done in steps.items()}))
        done: dict[int, Record] = {}
        for i, result in self.backend.map(self.evaluators[requests[0].fidelity], requests, on_steps):
            done[i] = requests[i].record(result)
            self.add(done[i])
        return [done[i] for i in range(len(requests))]
