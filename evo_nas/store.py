"""A run directory: resolved config, append-only journal, atomic snapshots, derived tables
(docs/design.md lists its files).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import yaml

from evo_nas.errors import RunDirError
from evo_nas.files import atomic_write
from evo_nas.records import History, Record

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

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, meta: dict) -> RunDir:
        """A new run directory; refuses to touch one that exists and is not empty."""
        run = cls(path)
        cls.refuse_existing(run.path)
        try:
            run.snapshot_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"{run.path}: cannot create run directory ({err.strerror})") from None
        atomic_write(run.config_file, yaml.safe_dump(config, sort_keys=False))
        atomic_write(run.meta_file, json.dumps({"format": FORMAT, **meta}, indent=2) + "\n")
        run.journal_file.touch()
        return run

    @staticmethod
    def refuse_existing(path: Path) -> None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunDirError(f"{path}: already exists; continue it with `evonas resume {path}` "
                              f"or choose another --name")

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
            raise RunDirError(f"{run.path}: run format {meta.get('format')!r} is not supported "
                              f"by this evonas (format {FORMAT})")
        return run

    def meta(self) -> dict:
        try:
            meta = json.loads(self.meta_file.read_text())
        except (OSError, ValueError) as err:
            raise RunDirError(f"{self.meta_file}: unreadable ({err})") from None
        if not isinstance(meta, dict):
            raise RunDirError(f"{self.meta_file}: unreadable (not a JSON object)")
        return meta

    def config(self) -> dict:
        try:
            data = yaml.safe_load(self.config_file.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise RunDirError(f"{self.config_file}: unreadable ({err})") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{self.config_file}: unreadable (not a mapping)")
        return data

    # -- journal ----------------------------------------------------------------------
    def append(self, record: Record | dict) -> None:
        """Append one evaluation and make it durable before returning."""
        data = record.to_json() if isinstance(record, Record) else record
        line = json.dumps(data, sort_keys=True, allow_nan=False) + "\n"
        with open(self.journal_file, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def history(self, repair: bool = False) -> History:
        """The journal as typed records, replayed once; a damaged line is an error naming it."""
        return History(Record.from_json(d, f"{self.journal_file}: line {n}") for n, d in self._lines(repair))

    def journal(self, repair: bool = False) -> list[dict]:
        """Every line as a plain dict, in the order written (see _lines)."""
        return [d for _, d in self._lines(repair)]

    def _lines(self, repair: bool) -> list[tuple[int, dict]]:
        """(line number, record) in the order written. A truncated last line (a kill mid-write)
        is dropped with a warning, and with `repair` cut from the file so appends start on a
        fresh line; damage anywhere else is an error."""
        raw = self.journal_file.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        lines = text.split("\n")
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "id" not in record:
                    raise ValueError("not an evaluation record")
            except ValueError:
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

    def _truncate_to(self, size: int) -> None:
        # Cut the half-written line so the next append starts on a fresh line.
        with open(self.journal_file, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())

    # -- snapshots --------------------------------------------------------------------
    def save_snapshot(self, generation: int, snapshot: dict) -> None:
        path = self.snapshot_dir / f"gen-{generation:05d}.json"
        atomic_write(path, json.dumps(snapshot, sort_keys=True) + "\n")
        for old in self._snapshots()[:-KEEP_SNAPSHOTS]:
            old.unlink(missing_ok=True)

    def snapshots(self) -> list[dict]:
        """Every snapshot that reads back, newest first; damaged ones are skipped with a warning."""
        out = []
        for path in reversed(self._snapshots()):
            try:
                snapshot = json.loads(path.read_text())
                if isinstance(snapshot, dict) and "generation" in snapshot:
                    out.append(snapshot)
                    continue
            except (OSError, ValueError):
                pass
            warnings.warn(f"{path}: damaged snapshot, falling back to the previous one", stacklevel=2)
        return out

    def _snapshots(self) -> list[Path]:
        return sorted(self.snapshot_dir.glob("gen-*.json"))


# -- tables (pandas), derived from the journal -------------------------------------------

HISTORY_COLUMNS = ["id", "rung", "generation", "operator", "parents", "status", "accuracy", "macs", "params",
                   "train_loss", "epochs", "wall_time", "device", "path", "cache_of", "error", "key", "genome"]


def history_frame(history: History):
    """One row per journal line, ordered by id and rung; the genome as compact JSON."""
    import pandas as pd

    rows = []
    for r in sorted(history.records, key=lambda r: (r.id, r.rung)):
        data = r.to_json()
        row = {c: data.get(c) for c in HISTORY_COLUMNS}
        row["parents"] = " ".join(str(p) for p in r.parents)
        row["genome"] = json.dumps(data["genome"], sort_keys=True, separators=(",", ":"))
        rows.append(row)
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def write_csv(frame, path: Path) -> None:
    atomic_write(path, frame.to_csv(index=False))
