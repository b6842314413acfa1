"""The run report: what it shows (report.data), how it looks (report.html), and writing it.

`report_data(run_dir)` computes a small `ReportData` from the journal (no plotly); `render_html`
turns it into one self-contained page (plotly.js embedded, so the file opens offline);
`write_report` writes it with front.csv and history.csv; `refresh` is what the runner calls
after each generation. The journal is the truth: everything is recomputed from it. What is
counted, and how, is in docs/report.md.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from evo_nas.errors import UserError
from evo_nas.files import atomic_write
from evo_nas.records import Record
from evo_nas.report.data import ReportData, report_data, si
from evo_nas.store import RunDir, history_frame, write_csv

FRONT_COLUMNS = ["id", "name", "generation", "operator", "parents", "accuracy", "macs", "params", "description",
                 "genome"]


def front_rows(run_dir: str | os.PathLike | RunDir) -> list[dict]:
    """The front as JSON-ready rows, best accuracy first."""
    data = report_data(run_dir)
    return [_row(data.individuals[i]) for i in data.front]


def _row(e: Record) -> dict:
    return {"id": e.id, "name": e.genome.name, "generation": e.generation, "operator": e.operator,
            "parents": list(e.parents), "accuracy": e.accuracy, "macs": e.macs, "params": e.params,
            "description": e.genome.describe(), "genome": e.genome.to_dict()}


def front_frame(rows: list[dict]):
    import pandas as pd

    flat = [{**r, "parents": " ".join(map(str, r["parents"])),
             "genome": json.dumps(r["genome"], sort_keys=True, separators=(",", ":"))} for r in rows]
    return pd.DataFrame(flat, columns=FRONT_COLUMNS)


def print_front(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not rows:
        console.print("the front is empty: no successful evaluation yet")
        return
    table = Table(title=f"Pareto front ({len(rows)} genomes)", title_justify="left")
    for column, justify in (("id", "right"), ("gen", "right"), ("accuracy", "right"), ("MACs", "right"),
                            ("params", "right"), ("operator", "left"), ("genome", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for r in rows:
        genome = f"{r['name']}: {r['description']}" if r["name"] else r["description"]
        table.add_row(str(r["id"]), str(r["generation"]), f"{r['accuracy']:.4f}", si(r["macs"]),
                      si(r["params"]), escape(r["operator"]), escape(genome))  # cells print as [..]
    console.print(table)


def render_html(data: ReportData) -> str:
    from evo_nas.report.html import render_html as render

    return render(data)


def write_report(run_dir: str | os.PathLike | RunDir, out: str | os.PathLike | None = None) -> Path:
    """Write report.html, front.csv and history.csv into the run directory, or only the HTML
    to `out`. Everything is read and rendered before the first byte is written."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    data = report_data(run)
    page = render_html(data)
    if out is None:
        return _write_run_files(run, data, page)
    path = Path(out)
    try:
        atomic_write(path, page)
    except OSError as err:
        raise UserError(f"{path}: cannot write the report ({err.strerror or err})") from None
    return path


def _write_run_files(run: RunDir, data: ReportData, page: str) -> Path:
    write_csv(history_frame(data.history), run.history_file)
    write_csv(front_frame([_row(data.individuals[i]) for i in data.front]), run.path / "front.csv")
    atomic_write(run.path / "report.html", page)
    return run.path / "report.html"


def refresh(run: RunDir) -> None:
    """Rewrite the report after a generation. A run directory or disk problem becomes a
    warning, never a failed run: the search matters more than its report. Bugs still raise."""
    try:
        data = report_data(run)
        _write_run_files(run, data, render_html(data))
    except (UserError, OSError) as err:
        warnings.warn(f"{run.path}: report not refreshed ({err})", stacklevel=2)


