"""A run for Python: its evaluations and its front as pandas DataFrames, what `evo_nas.load`
returns (Optuna users know these as `study.trials_dataframe()` and `study.best_trials`).   [pandas]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evo_nas.genome import Genome
from evo_nas.records import Record, Status
from evo_nas.report.data import ROW_COLUMNS, ReportData, evaluation_rows, report_data
from evo_nas.store import RunDir

# Column -> pandas dtype; the rest keep their values as they are (parents: tuples of ids,
# genome: the Genome value, status: a categorical of Status's values).
DTYPES = {
    "id": "int64", "rung": "int64", "generation": "int64", "repeats": "Int64", "macs": "Int64",
    "params": "Int64", "cache_of": "Int64", "final": "bool", "on_front": "bool",
    **{name: "float64" for name in ("accuracy", "accuracy_sd", "train_loss", "epochs", "wall_time", "images_per_s",
                                    "lr", "weight_decay", "dropout")},
    **{name: "string" for name in ("operator", "device", "path", "precision", "fallback", "error", "name",
                                   "description", "key", "optimizer")},
}


@dataclass(frozen=True)
class Run:
    """A run directory, read once. `history`: one row per evaluation (an individual at one rung,
    its repeats combined, or a cache hit), in the journal's order; `front`: the rows of the
    Pareto front, best accuracy first; `front_records`: the same as typed Records."""

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
    history = frame(evaluation_rows(data.history, data.front))
    front = history[history["on_front"]].set_index("id").loc[list(data.front)].reset_index()
    return Run(name=data.name, path=Path(data.path), config=data.config, meta=data.meta, objectives=data.objectives,
               history=history, front=front, front_records=tuple(data.individuals[i] for i in data.front),
               _data=data)


def frame(rows: list[dict]):
    """report.data.evaluation_rows as a DataFrame with typed columns."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else list(ROW_COLUMNS))
    df["status"] = pd.Categorical([str(s) for s in df["status"]], categories=[s.value for s in Status])
    df["finished"] = pd.to_datetime(df["finished"], errors="coerce")
    return df.astype({c: t for c, t in DTYPES.items() if c in df.columns})
