"""A run for Python: its evaluations and its front as pandas DataFrames, what `evo_nas.load`
returns (Optuna users know these as `study.trials_dataframe()` and `study.best_trials`).   [pandas]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evo_nas.genome import Genome
from evo_nas.records import Record
from evo_nas.report.data import ReportData, report_data
from evo_nas.store import RunDir, frame


@dataclass(frozen=True)
class Run:
    """A run directory, read once. `history`: one row per evaluation (an individual at one rung,
    its repeats combined, or a cache hit), in the journal's order, with store.COLUMNS typed as it
    says; `front`: the rows of the Pareto front, best accuracy first; `front_records`: the same
    as typed Records."""

    name: str
    path: Path
    config: dict  # flat: setting name -> value
    meta: dict
    objectives: tuple[str, ...]
    history: object  # pandas.DataFrame
    front: object  # pandas.DataFrame
    front_records: tuple[Record, ...]
    _data: ReportData

    def record(self, ident: int) -> Record:
        """The final record of individual `ident` (its highest rung, repeats combined)."""
        record = self._data.individuals.get(ident)
        if record is None:
            raise KeyError(f"{self.path}: no individual #{ident}")
        return record

    def genome(self, ident: int) -> Genome:
        return self.record(ident).genome

    def __repr__(self) -> str:
        return f"<evonas run {self.name!r}: {len(self.history)} evaluations, front of {len(self.front_records)}>"


def load(run_dir: str | os.PathLike | RunDir) -> Run:
    """Read a run directory (RunDirError, a UserError, if it is not a readable run)."""
    data = report_data(run_dir)
    history = frame(data.rows())
    front = history[history["on_front"]].set_index("id").loc[list(data.front)].reset_index()
    return Run(name=data.name, path=Path(data.path), config=data.config, meta=data.meta, objectives=data.objectives,
               history=history, front=front, front_records=tuple(data.individuals[i] for i in data.front),
               _data=data)
