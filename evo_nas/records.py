"""What evaluations produced: `Status`, `Result`, the journal's `Record`, and `History`, the
journal replayed once.   [no torch]

A Record is one journal line: who (id, rung, generation, genome, parents, operator), what
came out (its Result) and, for a network met before, which evaluation it reused (`cache_of`).
History answers the questions every reader of a run asks: each individual's final record
(its highest successive-halving rung), the first evaluation of a network, the front.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum

from evo_nas import pareto
from evo_nas.errors import GenomeError, RunDirError, short
from evo_nas.genome import Genome
from evo_nas.spaces import parse_genome


class Status(str, Enum):
    OK = "ok"  # trained and measured
    FAILED = "failed"  # out of memory, NaN loss, time limit, an exception: the reason is in `error`
    INFEASIBLE = "infeasible"  # over a MAC or parameter limit: counted, not trained

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Result:
    """What one evaluation produced. Fields a status does not have are None (and absent
    from the journal line)."""

    status: Status
    accuracy: float | None = None  # validation accuracy, a fraction
    test_accuracy: float | None = None  # a final training's accuracy on the test split (the only use of it)
    macs: int | None = None  # multiply-adds per image
    params: int | None = None  # trainable parameters, auxiliary head excluded
    train_loss: float | None = None
    epochs: float | None = None  # epochs actually trained
    error: str | None = None  # why it failed or is infeasible: one line
    device: str | None = None
    path: str | None = None  # "graph" or "eager"
    fallback: str | None = None  # why a CUDA training did not use a graph ("" if it did)
    precision: str | None = None
    images_per_s: float | None = None
    wall_time: float | None = None
    # CUDA: bytes the process's allocator held when the evaluation ended, after its graph was
    # closed (not a peak: candidates in flight share one process); bounded if pools are freed.
    memory_reserved: int | None = None
    # An individual trained with several seeds (`--repeats R`): its final record's accuracy is
    # the mean over the R trainings, accuracy_sd their sample standard deviation, repeats R.
    accuracy_sd: float | None = None
    repeats: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name).value if f.name == "status" else getattr(self, f.name)
                for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, d: dict) -> Result:
        known = {f.name for f in fields(cls)}
        return cls(**{k: Status(v) if k == "status" else v for k, v in d.items() if k in known})


RESULT_FIELDS = tuple(f.name for f in fields(Result))
PROXY = None  # the `fidelity` of a run's own evaluations: its proxy training


@dataclass(frozen=True)
class Record:
    """One journal line: an individual's evaluation at one rung, or a cache hit."""

    id: int
    generation: int
    genome: Genome
    key: str
    result: Result
    rung: int = 0
    parents: tuple[int, ...] = ()
    operator: str = ""
    cache_of: int | None = None  # the evaluation whose result this network already had
    finished: str | None = None  # local time the line was written
    repeat: int | None = None  # which of the R trainings of `--repeats R` (None: R = 1)
    # Which evaluator measured it: PROXY (None), the run's own proxy; or a name such as
    # "reference" (evonas fidelity) or "final" (evonas study's final trainings).
    fidelity: str | None = PROXY
    predicted: float | None = None  # the predictor's accuracy for it when it was screened (`--predictor`)
    screen_s: float | None = None  # seconds its generation's screening took per child screened
    extra: dict = field(default_factory=dict, compare=False)  # fields of other versions, kept as read

    @property
    def status(self) -> Status:
        return self.result.status

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def trained(self) -> bool:
        """Whether it trained a network (budget counts these): not a cache hit, not infeasible."""
        return self.cache_of is None and self.result.status is not Status.INFEASIBLE and not self.repeat

    @property
    def slot(self) -> tuple:
        """What the journal holds once per evaluation: (id, rung, repeat, fidelity)."""
        return self.id, self.rung, self.repeat, self.fidelity

    def __getattr__(self, name: str):  # record.accuracy, record.macs, ...: its result's
        if name in RESULT_FIELDS:
            return getattr(self.result, name)
        raise AttributeError(name)

    def to_json(self) -> dict:
        out = {"id": self.id, "rung": self.rung, "generation": self.generation, "key": self.key,
               "genome": self.genome.to_dict(), "parents": list(self.parents), "operator": self.operator,
               **self.extra, **self.result.to_json()}
        for name in ("cache_of", "finished", "repeat", "fidelity", "predicted", "screen_s"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, d: object, where: str) -> Record:
        """A journal line's record, checked; RunDirError (one line, naming `where`) if damaged."""
        if not isinstance(d, dict):
            raise RunDirError(f"{where}: not an evaluation record")
        try:
            return cls._from_json(d, where)
        except (GenomeError, KeyError, TypeError, ValueError) as err:
            raise RunDirError(f"{where}: damaged record ({_why(err)})") from None

    @classmethod
    def _from_json(cls, d: dict, where: str) -> Record:
        for name in ("id", "generation"):
            if not _is_int(d.get(name)):
                raise ValueError(f"{name} must be an integer, got {short(d.get(name))}")
        for name in ("rung", "cache_of", "repeat"):
            if d.get(name) is not None and not _is_int(d[name]):
                raise ValueError(f"{name} must be an integer, got {short(d[name])}")
        result = Result.from_json(d)
        measured = _is_number(result.accuracy) or _is_number(result.test_accuracy)
        if result.ok and not (measured and _is_number(result.macs) and _is_number(result.params)):
            raise ValueError("a successful evaluation without accuracy, macs and params")
        if d.get("fidelity") is not None and not isinstance(d["fidelity"], str):
            raise ValueError("fidelity must be a name")
        for name in ("accuracy", "test_accuracy", "macs", "params", "train_loss", "epochs", "wall_time",
                     "images_per_s", "memory_reserved"):
            if getattr(result, name) is not None and not _is_number(getattr(result, name)):
                raise ValueError(f"{name} must be a number")
        for name in ("predicted", "screen_s"):
            if d.get(name) is not None and not _is_number(d[name]):
                raise ValueError(f"{name} must be a number")
        parents = d.get("parents") or ()
        if not isinstance(parents, list | tuple) or not all(_is_int(p) for p in parents):
            raise ValueError("parents must be a list of ids")
        known = {"id", "rung", "generation", "key", "genome", "parents", "operator", "cache_of", "finished",
                 "repeat", "fidelity", "predicted", "screen_s", *RESULT_FIELDS}
        return cls(id=d["id"], generation=d["generation"], genome=parse_genome(d.get("genome"), "genome"),
                   key=str(d.get("key", "")), result=result, rung=d.get("rung", 0), parents=tuple(parents),
                   operator=str(d.get("operator", "")), cache_of=d.get("cache_of"), finished=d.get("finished"),
                   repeat=d.get("repeat"), fidelity=d.get("fidelity"), predicted=d.get("predicted"),
                   screen_s=d.get("screen_s"),
                   extra={k: v for k, v in d.items() if k not in known})


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _why(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text.removeprefix("genome: ")


def combined(records: Sequence[Record]) -> Record:
    """The record of an individual trained several times at one rung (`--repeats`): accuracy
    and train loss are the means, accuracy_sd the sample standard deviation, wall time the sum.
    Any failed training makes the whole evaluation failed, with that training's reason."""
    if len(records) == 1:
        return records[0]
    results = [r.result for r in records]
    failed = [x for x in results if not x.ok]
    first = records[0]
    if failed:
        reason = f"{len(failed)} of {len(results)} trainings failed: {failed[0].error}"
        result = replace(failed[0], error=reason, repeats=len(results), wall_time=_sum(x.wall_time for x in results))
    else:
        accuracies = [x.accuracy for x in results]
        result = replace(results[0], accuracy=statistics.fmean(accuracies), accuracy_sd=statistics.stdev(accuracies),
                         train_loss=_mean([x.train_loss for x in results], None), repeats=len(results),
                         wall_time=_sum(x.wall_time for x in results),
                         images_per_s=_mean([x.images_per_s for x in results], 1),
                         memory_reserved=max((x.memory_reserved for x in results if x.memory_reserved is not None),
                                             default=None))
    return replace(first, result=result, repeat=None)


def _sum(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values), 3) if values else None


def _mean(values, digits: int | None) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values) if digits is None else round(statistics.fmean(values), digits)


class History:
    """Every record of a run, replayed once; answers final(id), by_key(key), front(objectives)
    about the evaluations of one fidelity (the run's own proxy unless told), and keeps the
    records of other fidelities for `of`."""

    def __init__(self, records: Iterable[Record] = (), fidelity: str | None = PROXY):
        self.fidelity = fidelity
        self.records: list[Record] = []  # of this fidelity, in the order written
        self.others: list[Record] = []  # of other fidelities
        self._rungs: dict[tuple[int, int], list[Record]] = {}  # (id, rung) -> its trainings, first written first
        self._top: dict[int, int] = {}  # id -> the highest rung it reached
        self._first: dict[str, int] = {}  # canonical key -> id of its first evaluation
        for record in records:
            self.add(record)

    def of(self, fidelity: str | None) -> History:
        """The same journal, answering about the evaluations of another fidelity."""
        return History(self.records + self.others, fidelity)

    def add(self, record: Record) -> None:
        if record.fidelity != self.fidelity:
            self.others.append(record)
            return
        self.records.append(record)
        self._rungs.setdefault((record.id, record.rung), []).append(record)
        self._top[record.id] = max(self._top.get(record.id, record.rung), record.rung)
        if record.cache_of is None:
            self._first.setdefault(record.key, record.id)

    def __len__(self) -> int:
        return len(self.records)

    def final(self, ident: int) -> Record | None:
        """The individual's record at the highest rung it reached (its repeats combined)."""
        top = self._top.get(ident)
        return None if top is None else combined(self._rungs[(ident, top)])

    def finals(self) -> list[Record]:
        """Each individual's final record, by id; cache hits included."""
        return [self.final(i) for i in sorted(self._top)]

    def rung_records(self) -> list[Record]:
        """Each individual's record at each rung it reached (repeats combined, cache hits too), first written first."""
        return [combined(trainings) for trainings in self._rungs.values()]

    def evaluations(self) -> list[Record]:
        """Final records of the individuals that were evaluated (not served from the cache)."""
        return [r for r in self.finals() if r.cache_of is None]

    def by_key(self, key: str) -> Record | None:
        """The final record of the first evaluation of the network `key` names."""
        ident = self._first.get(key)
        return None if ident is None else self.final(ident)

    def trained(self) -> int:
        """Individuals whose network was trained: what a budget counts (rung 0, once each)."""
        return sum(1 for r in self.records if r.trained and r.rung == 0)

    def cache_hits(self) -> int:
        return sum(1 for r in self.records if r.cache_of is not None)

    def front(self, objectives: Sequence[str]) -> list[Record]:
        """The run-wide Pareto front over successful evaluations, best accuracy first."""
        return front(self.evaluations(), objectives)


def front(records: Iterable[Record], objectives: Sequence[str]) -> list[Record]:
    """The non-dominated successful records for `objectives`, best accuracy first (ties:
    fewer MACs, fewer params, lower id)."""
    ok = [r for r in records if r.ok]
    members = [ok[i] for i in pareto.first_front([pareto.vector(r.result, objectives) for r in ok])]
    return sorted(members, key=lambda r: (-r.accuracy, r.macs, r.params, r.id))
