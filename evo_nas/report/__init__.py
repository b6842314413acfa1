"""The run report: what it shows (report.data), its figures (report.figures), its architecture
drawings (report.drawing), how it looks (report.html), and writing it.

`report_data(run_dir)` computes a small `ReportData` from the journal (no plotly); `render_html`
turns it into one page (report.shell: plotly.js embedded, so it opens offline, unless shared);
`write_report` writes it with its front and history CSVs, which never need plotly; `refresh` is
what the runner calls after each generation. The journal is the truth: everything is
recomputed from it. What is counted, and how, is in docs/report.md.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from evo_nas.errors import UserError
from evo_nas.files import atomic_write
from evo_nas.report import shell
from evo_nas.report.data import ReportData, report_data, si
from evo_nas.report.html import render_html
from evo_nas.store import FRONT_COLUMNS, RunDir, csv_text, frame, history_frame, rows


def front_rows(run_dir: str | os.PathLike | RunDir) -> list[dict]:
    """The front as JSON-ready rows (store.FRONT_COLUMNS), best accuracy first."""
    return [{**{c: r[c] for c in FRONT_COLUMNS}, "parents": list(r["parents"]), "genome": r["genome"].to_dict()}
            for r in _front(report_data(run_dir))]


def _front(data: ReportData) -> list[dict]:
    return rows([data.individuals[i] for i in data.front], data.history, data.front)


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
        accuracy = f"{r['accuracy']:.4f}" + (f" ± {r['accuracy_sd']:.4f}" if r.get("accuracy_sd") is not None else "")
        table.add_row(str(r["id"]), str(r["generation"]), accuracy, si(r["macs"]),
                      si(r["params"]), escape(r["operator"]), escape(genome))  # cells print as [..]
    console.print(table)


def write_report(run_dir: str | os.PathLike | RunDir, out: str | os.PathLike | None = None,
                 plotly_js: str = "inline") -> dict[str, Path]:
    """Write the report with its front and history CSVs: report.html, front.csv and history.csv
    in the run directory, or `out` with OUT-front.csv and OUT-history.csv beside it; with
    plotly_js="shared" also plotly.min.js beside the page. Returns what was written, by kind.
    Without plotly the page is skipped with one warning line; the CSVs are written.

    Everything is checked, read and rendered before the first byte is written. `out` never
    replaces one of the run's own files, nor any file that is not one evonas wrote of the
    same kind: a UserError says which, and nothing is written."""
    if plotly_js not in shell.PLOTLY_JS:
        raise UserError(f"--plotly-js: must be one of {', '.join(shell.PLOTLY_JS)}, got {plotly_js!r}")
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    targets = _targets(run, out, plotly_js)
    if out is not None:
        _check_targets(run, targets)
    data = report_data(run)
    files = {"front": csv_text(frame(_front(data))[list(FRONT_COLUMNS)]),
             "history": csv_text(history_frame(data.history, data.objectives))}
    page = shell.rendered(targets["report"], lambda: render_html(data, plotly_js))  # None: no plotly
    if page is not None:
        files.update({"report": page, **({"plotly.js": shell.plotly_js_text()} if plotly_js == "shared" else {})})
    for kind in files:  # the tables first: they never depend on the page
        try:
            _write_unless_same(targets[kind], files[kind])
        except OSError as err:
            raise UserError(f"{targets[kind]}: cannot write the report ({err.strerror or err})") from None
    return {kind: path for kind, path in targets.items() if kind in files}


def _targets(run: RunDir, out, plotly_js: str) -> dict[str, Path]:
    page = run.path / "report.html" if out is None else Path(out)
    if out is None or _same(page, run.path / "report.html"):
        targets = {"report": page, "front": run.path / "front.csv", "history": run.history_file}
    else:
        targets = {"report": page, "front": page.with_name(f"{page.stem}-front.csv"),
                   "history": page.with_name(f"{page.stem}-history.csv")}
    if plotly_js == "shared":
        targets["plotly.js"] = page.with_name(shell.PLOTLY_FILE)
    return targets


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _check_targets(run: RunDir, targets: dict[str, Path]) -> None:
    own = {"config": run.config_file, "meta": run.meta_file, "journal": run.journal_file,
           "history": run.history_file, "front": run.path / "front.csv"}
    snapshots = run.snapshot_dir.resolve()
    for kind, path in targets.items():
        resolved = path.resolve()
        mine = next((name for name, f in own.items() if resolved == f.resolve() and name != kind), None)
        if mine is not None:
            raise UserError(f"{path}: is the run's own {mine} file; --out must name a new file or an earlier "
                            f"report (nothing was written)")
        if resolved == snapshots or snapshots in resolved.parents:
            raise UserError(f"{path}: is in the run's snapshots folder; --out must name a file outside it "
                            f"(nothing was written)")
        if resolved.is_dir():
            raise UserError(f"{path}: is a folder; --out names the HTML file to write (nothing was written)")
        if resolved.exists() and not written_by_evonas(resolved, kind):
            what = {"report": "an evonas report", "plotly.js": "a copy of plotly.js"}.get(kind, "an evonas table")
            raise UserError(f"{path}: exists and is not {what}; remove it or choose another --out "
                            f"(nothing was written)")


def written_by_evonas(path: Path, kind: str) -> bool:
    """Whether an existing file is one `write_report` wrote for `kind`: a page with evonas's
    generator tag (or the title older reports had), plotly.js, or a table of evonas rows."""
    try:
        with open(path, "rb") as f:
            start = f.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    if kind == "report":
        return start.startswith("<!DOCTYPE html>") and (shell.GENERATOR in start or "<title>evonas report:" in start)
    if kind == "plotly.js":
        return "plotly.js v" in start[:200]
    header = start.split("\n", 1)[0].split(",")
    return header[0] == "id" and header[-1] == "genome"


def _write_unless_same(path: Path, text: str) -> None:
    """atomic_write, skipped when the file holds exactly this already (a shared plotly.js)."""
    try:
        if path.stat().st_size == len(text.encode("utf-8")) and path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(path, text)


def refresh(run: RunDir) -> None:
    """Rewrite the report after a generation. A run directory or disk problem becomes a
    warning, never a failed run: the search matters more than its report (without plotly, the
    page is skipped with a warning and the tables are written). Bugs still raise."""
    try:
        write_report(run)
    except (UserError, OSError) as err:
        warnings.warn(f"{run.path}: report not refreshed ({err})", stacklevel=2)
