"""A run directory: resolved config, append-only journal, atomic snapshots, derived tables
(docs/design.md lists its files).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

import yaml

from evo_nas import config as configs
from evo_nas import pareto
from evo_nas.config import SearchConfig, StopConfig
from evo_nas.errors import DiskFull, RunDirError, UserError, short
from evo_nas.files import FULL, append_line, atomic_write, disk_full, fsync_dir
from evo_nas.reading import read_json, read_yaml, too_deep
from evo_nas.records import History, Record, Status
from evo_nas.search import IdPlan

FORMAT = 1
KEEP_SNAPSHOTS = 3  # older ones are deleted; the newest that reads back is used


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- files ------------------------------------------------------------------------
    config_file = property(lambda self: self.path / "config.yaml")
    meta_file = property(lambda self: self.path / "meta.json")
    journal_file = property(lambda self: self.path / "journal.jsonl")
    snapshot_dir = property(lambda self: self.path / "snapshots")
    history_file = property(lambda self: self.path / "history.csv")

    ignored_file = property(lambda self: self.path / "journal-ignored.jsonl")  # lines set aside as damage
    lock_file = property(lambda self: self.path / ".lock")

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, meta: dict) -> RunDir:
        """A new run directory, complete or not at all: it is written under a temporary name and
        renamed into place, so a kill half-way leaves no dead end. Refuses an existing one."""
        final = Path(path)
        cls.refuse_existing(final)
        tmp = cls(final.with_name(f".{final.name}.tmp-{os.getpid()}"))
        try:
            shutil.rmtree(tmp.path, ignore_errors=True)
            tmp.snapshot_dir.mkdir(parents=True)
            atomic_write(tmp.config_file, yaml.safe_dump(config, sort_keys=False))
            atomic_write(tmp.meta_file, json.dumps({"format": FORMAT, **meta}, indent=2) + "\n")
            atomic_write(tmp.journal_file, "")
            os.rename(tmp.path, final)
        except (OSError, DiskFull) as err:
            shutil.rmtree(tmp.path, ignore_errors=True)
            if final.exists():
                cls.refuse_existing(final)
            if isinstance(err, DiskFull) or err.errno in FULL:
                raise disk_full(final) from None
            raise RunDirError(f"{final}: cannot create the run directory ({err.strerror or err})") from None
        fsync_dir(final.parent)
        return cls(final)

    @staticmethod
    def refuse_existing(path: Path) -> None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunDirError(f"{path}: already exists; continue it with `evonas resume {path}` "
                              f"or choose another --name")

    @contextlib.contextmanager
    def locked(self):
        """Hold the run's exclusive lock while the block runs: one process at a time appends to a
        run (an advisory fcntl lock, as SQLite's; the kernel drops it when its holder dies, so a
        killed run never blocks its resume). Another holder: RunDirError naming its pid."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno in FULL:
                raise disk_full(self.lock_file) from None
            raise RunDirError(f"{self.path}: cannot write to the run directory ({err.strerror})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise RunDirError(f"{self.path}: in use by another evonas process (pid {holder}); wait for it "
                                  f"to finish or stop it, then resume") from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as err:
                if err.errno in FULL:
                    raise disk_full(self.lock_file) from None
                raise
            yield self
        finally:
            os.close(fd)  # releases the lock

    def check_writable(self) -> None:
        """Fail before any training when a result could not be written."""
        for target in (self.journal_file, self.config_file, self.meta_file, self.history_file):
            if target.is_dir():
                raise RunDirError(f"{target}: is a folder where the run keeps a file; move it away, then resume")
        if self.snapshot_dir.exists() and not self.snapshot_dir.is_dir():
            raise RunDirError(f"{self.snapshot_dir}: is a file where the run keeps its snapshots folder; move it "
                              f"away, then resume")
        for target in (self.path, self.journal_file, self.snapshot_dir, self.config_file):
            if target.exists() and not os.access(target, os.W_OK):
                raise RunDirError(f"{target}: not writable; a resumed run must append to its journal and "
                                  f"snapshots (check the permissions of {self.path})")

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run directory, checked enough to resume or report from it."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"{run.path}: no such run directory")
        for f in (run.meta_file, run.config_file, run.journal_file):
            if not f.exists():
                raise RunDirError(f"{run.path}: not an evonas run directory (missing {f.name})")
        meta = run.meta()
        if meta.get("format") != FORMAT:
            raise RunDirError(f"{run.path}: run format {short(meta.get('format'))} is not supported "
                              f"by this evonas (format {FORMAT})")
        return run

    def meta(self) -> dict:
        meta = read_json(self.meta_file, RunDirError, "meta.json")
        problem = _meta_problem(meta)
        if problem is not None:
            raise RunDirError(f"{self.meta_file}: damaged ({problem})")
        return meta

    def objectives(self) -> tuple[str, ...]:
        """The run's objectives: meta.json's (config.yaml's in older runs), else the default three."""
        from evo_nas.config import flat_config  # config is not needed to read a journal

        names = self.meta().get("objectives") or flat_config(self.config()).get("objectives") or pareto.OBJECTIVES
        if not isinstance(names, list | tuple) or not names or any(n not in pareto.OBJECTIVES for n in names):
            raise RunDirError(f"{self.meta_file}: objectives {names!r} are not names from "
                              f"{', '.join(pareto.OBJECTIVES)}")
        return tuple(names)

    def config(self) -> dict:
        data = read_yaml(self.config_file, RunDirError, "run config")
        if not isinstance(data, dict):
            raise RunDirError(f"{self.config_file}: unreadable (not a mapping)")
        return data

    # -- journal ----------------------------------------------------------------------
    def append(self, record: Record) -> None:
        """Append one evaluation and make it durable before returning."""
        append_line(self.journal_file, json.dumps(record.to_json(), sort_keys=True, allow_nan=False) + "\n")

    def history(self, repair: bool = False) -> History:
        """The journal as typed records, replayed once; a damaged line is an error naming it. A
        line repeating an evaluation already read (same id, rung and repeat) is left out with a
        warning: the first one counts. So is, with a warning, a line this run cannot have made
        (search.IdPlan); with `repair` it is moved to journal-ignored.jsonl, so that a resume
        that extends the run does not find it in the way of its own evaluation of that id."""
        read = [(n, Record.from_json(d, f"{self.journal_file}: line {n}")) for n, d in self._lines(repair)]
        plan = self.id_plan([record for _, record in read])
        impossible = {n for n, r in read if plan is not None and not plan.possible(r.id, r.generation)}
        if impossible:
            named = [f"line {n}: evaluation {r.id} (generation {r.generation})" for n, r in read if n in impossible]
            more = f" and {len(named) - 3} more lines" if len(named) > 3 else ""
            warnings.warn(f"{self.journal_file}: {'; '.join(named[:3])}{more}: not made by this run (ids and "
                          f"generations it cannot have had); ignoring {'them' if len(named) > 1 else 'it'} as damage"
                          + ("; moved to journal-ignored.jsonl" if repair else ""), stacklevel=2)
            if repair:
                self._set_aside(impossible)
        records, seen = [], {}
        for n, record in read:
            if n in impossible:
                continue
            slot = record.slot
            if slot in seen:
                warnings.warn(f"{self.journal_file}: line {n} repeats evaluation {record.id} (rung {record.rung}) "
                              f"of line {seen[slot]}; keeping line {seen[slot]}", stacklevel=2)
                continue
            seen[slot] = n
            records.append(record)
        return History(records)

    def _lines(self, repair: bool) -> list[tuple[int, dict]]:
        """(line number, record) in the order written. A truncated last line (a kill mid-write)
        is dropped with a warning, and with `repair` cut from the file so appends start on a
        fresh line; damage anywhere else is an error."""
        try:
            raw = self.journal_file.read_bytes()
        except OSError as err:
            raise RunDirError(f"{self.journal_file}: unreadable ({err.strerror or type(err).__name__})") from None
        text = raw.decode("utf-8", errors="replace")
        lines = text.split("\n")
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "id" not in record or too_deep(record, line):
                    raise ValueError("not an evaluation record")
            except (ValueError, RecursionError):
                if number == len(lines) and not text.endswith("\n"):
                    warnings.warn(f"{self.journal_file}: ignoring a truncated last line (the run was "
                                  f"killed while writing it); that evaluation will run again", stacklevel=2)
                    if repair:
                        self._truncate_to(raw.rfind(b"\n") + 1)
                    break
                raise RunDirError(f"{self.journal_file}: line {number} is damaged; the journal cannot "
                                  f"be read past it") from None
            records.append((number, record))
        return records

    def id_plan(self, records: list[Record]) -> IdPlan | None:
        """Which evaluations this run can have made, from its config and its newest usable
        snapshot; None for a directory that is no search (a fidelity measurement numbers its
        genomes) or whose config does not say how the search breeds."""
        try:
            if self.meta().get("kind", "search") != "search":
                return None
            flat = configs.flatten(self.config(), str(self.config_file))
            if not {"population", "generations", "budget"} <= set(flat):
                return None  # not a resolved config: nothing to bound by
            settings, stop = (cls(**{f.name: flat[f.name] for f in fields(cls) if f.name in flat})
                              for cls in (SearchConfig, StopConfig))
        except (UserError, TypeError):
            return None  # files a resume would refuse: the reader reads what it can
        snapshot = self.usable_snapshot({r.id for r in records}, warn=False)
        if snapshot is None:
            return IdPlan.of(settings, stop, None, 0)
        trained = History(r for r in records if r.id < snapshot["next_id"]).trained()
        return IdPlan.of(settings, stop, (snapshot["generation"], snapshot["next_id"]), trained)

    def _set_aside(self, numbers: set[int]) -> None:
        """Move journal lines `numbers` (counted from 1) to journal-ignored.jsonl: kept, not replayed."""
        lines = self.journal_file.read_bytes().split(b"\n")
        for n in sorted(numbers):
            append_line(self.ignored_file, lines[n - 1].decode("utf-8", errors="replace") + "\n")
        atomic_write(self.journal_file, b"\n".join(line for n, line in enumerate(lines, 1) if n not in numbers))

    def _truncate_to(self, size: int) -> None:
        # Cut the half-written line so the next append starts on a fresh line.
        with open(self.journal_file, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())

    # -- snapshots --------------------------------------------------------------------
    def save_snapshot(self, generation: int, snapshot: dict) -> None:
        self.snapshot_dir.mkdir(exist_ok=True)  # a deleted snapshots/ folder comes back
        path = self.snapshot_dir / f"gen-{generation:05d}.json"
        atomic_write(path, json.dumps(snapshot, sort_keys=True) + "\n")
        for old in self._snapshots()[:-KEEP_SNAPSHOTS]:
            old.unlink(missing_ok=True)

    def snapshots(self, warn: bool = True) -> list[dict]:
        """Every snapshot that reads back whole, newest first; a damaged one (unreadable, or a
        field missing or of the wrong type) is skipped (with a warning, unless told not to), so
        an older one or the journal alone takes its place."""
        out = []
        for path in reversed(self._snapshots()):
            try:
                snapshot = read_json(path, RunDirError, "snapshot")
                problem = _snapshot_problem(snapshot)
            except RunDirError as err:
                problem = str(err).removeprefix(f"{path}: ")
            if problem is None:
                out.append(snapshot)
            elif warn:
                warnings.warn(f"{path}: damaged snapshot ({problem}), falling back to the previous one",
                              stacklevel=2)
        return out

    def usable_snapshot(self, ids: set[int], warn: bool = True) -> dict | None:
        """The newest snapshot whose evaluations (ids below its next_id) are all among `ids`, the
        journal's. (Records are fsynced before the snapshot that follows them, so only damage
        makes one unusable; then an older snapshot, or the start, replays the journal to the
        same state.)"""
        for snapshot in self.snapshots(warn):
            if all(i in ids for i in range(snapshot["next_id"])):
                return snapshot
            if warn:
                warnings.warn(f"{self.path}: snapshot of generation {snapshot['generation']} names evaluations the "
                              f"journal lacks; using an older one", stacklevel=3)
        return None

    def _snapshots(self) -> list[Path]:
        return sorted(self.snapshot_dir.glob("gen-*.json"))


# meta.json's fields and their JSON types (those of a fidelity measurement included): a reader
# takes them as given, so a wrong one must be an error here, not a TypeError deep inside.
META_TYPES = {"format": int, "seed": int, "created": str, "kind": str, "objectives": list, "versions": dict,
              "reference_point": dict, "results_config": dict, "reference": dict, "genomes": list, "fidelity": dict}


def _meta_problem(meta: object) -> str | None:
    """What is wrong with meta.json's content, or None."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    for name, kind in META_TYPES.items():
        if name in meta and (not isinstance(meta[name], kind) or isinstance(meta[name], bool)):
            return f"{name} is {short(meta[name])}, not a JSON {_JSON_NAMES[kind]}"
    if not all(isinstance(o, str) for o in meta.get("objectives", [])):
        return "objectives is not a list of names"
    point = meta.get("reference_point", {})
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in point.values()):
        return "reference_point is not a mapping of numbers"
    return None


_JSON_NAMES = {int: "integer", str: "string", list: "list", dict: "object"}


def _snapshot_problem(snapshot: object) -> str | None:
    """What is wrong with a snapshot's content, or None."""
    if not isinstance(snapshot, dict):
        return "not a JSON object"
    for name in ("generation", "next_id"):
        if not isinstance(snapshot.get(name), int) or isinstance(snapshot.get(name), bool) or snapshot[name] < 0:
            return f"{name} is not a count"
    population = snapshot.get("population")
    if not isinstance(population, list) or not all(isinstance(i, int) and 0 <= i < snapshot["next_id"]
                                                   for i in population):
        return "population is not a list of ids"
    state = snapshot.get("rng")  # (earlier versions also kept the process's global state: unused)
    if not (isinstance(state, list) and len(state) == 3 and isinstance(state[1], list) and len(state[1]) == 625):
        return "rng is not a random state"
    return None


# -- tables (pandas), derived from the journal -------------------------------------------

# An evaluation row's columns and their pandas dtypes, for history.csv (a row per journal line),
# the report's table and evo_nas.load (a row per individual and rung, repeats combined: `repeat`
# empty), front.csv and `evonas front` (FRONT_COLUMNS). `final`: the individual's highest rung;
# `on_front`: final and on the front. HPARAM_COLUMNS go before key and genome in runs with them.
COLUMNS = {
    "id": "int64", "rung": "int64", "repeat": "Int64", "generation": "int64", "operator": "string", "parents": None,
    "status": None, "accuracy": "float64", "accuracy_sd": "float64", "repeats": "Int64", "macs": "Int64",
    "params": "Int64", "train_loss": "float64", "epochs": "float64", "wall_time": "float64", "images_per_s": "float64",
    "device": "string", "path": "string", "precision": "string", "fallback": "string", "cache_of": "Int64",
    "error": "string", "finished": None, "final": "bool", "on_front": "bool", "name": "string",
    "description": "string", "key": "string", "genome": None}  # None: set by `frame`
HPARAM_COLUMNS = {"lr": "float64", "weight_decay": "float64", "dropout": "float64", "optimizer": "string"}
FRONT_COLUMNS = ("id", "name", "generation", "operator", "parents", "accuracy", "accuracy_sd", "repeats", "macs",
                 "params", "description", "genome")


def rows(records: Iterable[Record], history: History, front: Iterable[int] = ()) -> list[dict]:
    """`records` of `history` as rows of plain values (parents a tuple, the genome a Genome)."""
    members, names = set(front), list(COLUMNS)
    if any(r.genome.hparams is not None for r in history.records):
        names[-2:-2] = HPARAM_COLUMNS
    out = []
    for r in records:
        final = r.rung == history.final(r.id).rung
        own = {"final": final, "on_front": final and r.id in members, "name": r.genome.name,
               "description": r.genome.describe(), **(r.genome.hparams.to_dict() if r.genome.hparams else {})}
        out.append({c: own[c] if c in own else getattr(r, c, None) for c in names})
    return out


def frame(rows: list[dict]):
    """Rows as a DataFrame, typed as COLUMNS says: status a categorical of Status's values."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else list(COLUMNS))
    df["status"] = pd.Categorical([str(s) for s in df["status"]], categories=[s.value for s in Status])
    df["finished"] = pd.to_datetime(df["finished"], errors="coerce")
    return df.astype({c: t for c, t in {**COLUMNS, **HPARAM_COLUMNS}.items() if t and c in df.columns})


def history_frame(history: History, objectives: Iterable[str]):
    """history.csv's table: a row per journal line, ordered by id, rung and repeat."""
    lines = sorted(history.records, key=lambda r: (r.id, r.rung, r.repeat or 0))
    return frame(rows(lines, history, [r.id for r in history.front(tuple(objectives))]))


def csv_text(df) -> str:
    """A table as CSV: parents as "4 8", the genome as compact JSON."""
    flat = df.assign(parents=[" ".join(map(str, p)) for p in df["parents"]],
                     genome=[json.dumps(g.to_dict(), sort_keys=True, separators=(",", ":")) for g in df["genome"]])
    return flat.to_csv(index=False)


def write_csv(df, path: Path) -> None:
    atomic_write(path, csv_text(df))
