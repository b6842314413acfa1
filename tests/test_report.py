"""The report: front over the whole history, hypervolume per generation against pymoo, lineage,
the hyperparameter border rule, the files it writes, bad input, and the page in headless Chromium.

Most tests use a hand-written journal whose answers are known (`history`); one uses a real tiny
search (`real_run`), and the browser test opens both reports.
"""

import html
import itertools
import json
import random
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pymoo.indicators.hv import HV

from evo_nas import pareto, report
from evo_nas.cli import cli, main
from evo_nas.genome import HParams
from evo_nas.genome_io import load_genome, loads
from evo_nas.records import Record, Result, Status
from evo_nas.report import data as rdata
from evo_nas.report import html as report_html
from evo_nas.spaces import parse_genome
from evo_nas.spaces.nb201 import OPS as NB201_OPS
from evo_nas.spaces.nb201 import NB201Genome, NB201Space
from evo_nas.store import RunDir

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
REFERENCE = {"accuracy": 1.0, "macs": 1000, "params": 100}
ARCHS = list(itertools.product(NB201_OPS, repeat=6))


def genome(i: int, hparams: HParams | None = None) -> NB201Genome:
    return NB201Genome(edges=ARCHS[i * 7919 % len(ARCHS)], hparams=hparams)


def make_run(path, records, hparams=False, objectives=("accuracy", "macs", "params"), reference=REFERENCE):
    config = {"space": "nb201", "algorithm": "nsga2", "dataset": "fashion-mnist", "device": "cpu",
              "objectives": list(objectives), "hparams": hparams, "fidelity": "sha", "sha_rungs": 2}
    run = RunDir.create(path, config, {"seed": 0, "reference_point": reference, "objectives": list(objectives),
                                       "created": "2026-01-01T00:00:00"})
    for r in records:
        run.append(r)
    return run


def rec(i, gen, acc, macs, params, parents=(), op="mut_edge", status="ok", g=None, **extra) -> dict:
    g = g or genome(i)
    r = {"id": i, "rung": 0, "generation": gen, "key": NB201Space().key(g), "genome": g.to_dict(),
         "parents": list(parents), "operator": op if parents or op.startswith("seed") else "init",
         "status": status, "macs": macs, "params": params, **extra}
    if status == "ok":
        r["accuracy"] = acc
    return r


def history_hparams(i: int) -> HParams:
    lr = {1: 0.5, 9: 0.49, 4: 0.45}.get(i, 0.01)  # the three best sit at lr's upper edge (log scale)
    return HParams(lr=lr, weight_decay=10 ** -(2 + i % 3), dropout=0.0, optimizer="sgd")


def history_records(hparams=False) -> list[dict]:
    """Three generations with a seed, a failure, a cache hit, an infeasible one and two rungs.
    Front (accuracy, macs, params): 1, 9, 4, 8, 2 -- 1 and 2 from generation 0, which the last
    population (4, 8, 9, 10) no longer holds."""
    def g(i):
        return genome(i, history_hparams(i) if hparams else None)

    seed = replace(load_genome(ROOT / "genomes" / "nb201_resnet.yaml"), hparams=g(0).hparams)
    return [
        rec(0, 0, 0.60, 500, 50, op="seed:ResNet (NB201 cell)", g=seed),
        rec(1, 0, 0.90, 900, 90, g=g(1)), rec(2, 0, 0.50, 100, 10, g=g(2)), rec(3, 0, 0.40, 600, 60, g=g(3)),
        rec(4, 1, 0.70, 300, 30, [1], g=g(4)),
        rec(5, 1, None, 200, 20, [2, 4], "cx_uniform+mut_edge", "failed", g=g(5), error="out of memory"),
        rec(6, 1, 0.50, 100, 10, [2], g=g(2), cache_of=2),
        rec(7, 1, None, 5000, 500, [3], status="infeasible", g=g(7), error="macs over the limit"),
        rec(8, 2, 0.55, 150, 12, [6], g=g(8)),
        rec(9, 2, 0.30, 400, 40, [4, 8], "cx_uniform+mut_edge", g=g(9)),
        {**rec(9, 2, 0.80, 400, 40, [4, 8], "cx_uniform+mut_edge", g=g(9)), "rung": 1},  # the final rung
        rec(10, 2, 0.20, 800, 80, [9], g=g(10)), rec(11, 2, 0.65, 350, 35, [4], g=g(11)),
    ]


@pytest.fixture
def history(tmp_path) -> RunDir:
    run = make_run(tmp_path / "history", history_records(hparams=True), hparams=True)
    run.save_snapshot(2, {"generation": 2, "next_id": 12, "population": [4, 8, 9, 10]})
    return run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> RunDir:
    """A real search, as small as it gets: NB201 at C=4, a seed genome, 3 + 3 evaluations."""
    from evo_nas import runner

    return runner.start({"space": "nb201", "population": 3, "generations": 1, "train_limit": 32, "val_limit": 32,
                         "init_channels": 4, "depth": 1, "bn_recalibration": 0, "batch_size": 32, "device": "cpu",
                         "seed_genomes": (str(ROOT / "genomes" / "nb201_resnet.yaml"),), "report": False,
                         "runs_dir": str(tmp_path_factory.mktemp("runs")), "name": "tiny"})


# -- the data -------------------------------------------------------------------------------

def brute_front(points: dict[int, tuple]) -> set[int]:
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and a != b
    return {i for i, p in points.items() if not any(dominates(q, p) for q in points.values())}


def test_front_is_over_the_whole_history(history):
    data = report.report_data(history)
    assert data.front == (1, 9, 4, 8, 2)  # best accuracy first
    assert {1, 2} <= set(data.front) and not {1, 2} & {4, 8, 9, 10}  # not only the last population
    assert data.individuals[9].accuracy == 0.80  # the highest rung is the final record
    assert 6 in data.individuals and 6 not in {e.id for e in data.evaluations}  # cache hit: not an evaluation
    ok = {e.id: pareto.vector(e.result, data.objectives) for e in data.evaluations if e.ok}
    assert set(data.front) == brute_front(ok)


def test_front_for_any_subset_of_objectives(tmp_path):
    for objectives in [("accuracy",), ("accuracy", "macs"), ("macs", "params"), ("accuracy", "params")]:
        run = make_run(tmp_path / "-".join(objectives), history_records(), objectives=objectives)
        data = report.report_data(run)
        ok = {e.id: pareto.vector(e.result, objectives) for e in data.evaluations if e.ok}
        assert set(data.front) == brute_front(ok), objectives


def test_the_fast_front_filter_matches_deaps_first_front():
    rng = random.Random(3)
    for n, d in itertools.product((1, 5, 40, 150), (1, 2, 3)):
        vectors = [tuple(rng.choice((0.1, 0.2, 0.3)) if rng.random() < 0.3 else rng.random() for _ in range(d))
                   for _ in range(n)]  # some ties and duplicates
        assert pareto.first_front(vectors) == pareto.nondominated_fronts(vectors)[0]  # DEAP's sort


def pymoo_hv(points, d) -> float:
    return float(HV(ref_point=np.ones(d))(np.array(points))) if points else 0.0


def test_hypervolume_per_generation_matches_pymoo(history):
    data = report.report_data(history)
    ref = data.reference
    assert ref == (1.0, 1000.0, 100.0)
    previous = -1.0
    for stats in data.generations:
        made = [e for e in data.evaluations if e.ok and e.generation <= stats.generation]
        points = [pareto.normalise(pareto.vector(e.result, data.objectives), ref) for e in made]
        assert stats.hypervolume == pytest.approx(pymoo_hv(points, 3), rel=1e-9)
        assert stats.hypervolume >= previous
        previous = stats.hypervolume
    assert [s.best_accuracy for s in data.generations] == [0.90, 0.90, 0.90]
    assert [s.generation_best for s in data.generations] == [0.90, 0.70, 0.80]
    assert [s.evaluations for s in data.generations] == [4, 3, 4]  # the cache hit is not one


@pytest.mark.parametrize("objectives", [("accuracy", "macs"), ("accuracy", "macs", "params")])
def test_hypervolume_on_random_runs_matches_pymoo(tmp_path, objectives):
    rng = random.Random(len(objectives))
    records = [rec(i, i // 10, rng.random(), rng.randint(10, 1200), rng.randint(1, 120)) for i in range(60)]
    data = report.report_data(make_run(tmp_path / "r", records, objectives=objectives))
    for stats in data.generations:
        points = [pareto.normalise(pareto.vector(e.result, objectives), data.reference)
                  for e in data.evaluations if e.generation <= stats.generation]
        assert stats.hypervolume == pytest.approx(pymoo_hv(points, len(objectives)), rel=1e-9)


def test_reference_point_comes_from_meta_not_from_the_points(tmp_path):
    records = history_records()
    small = report.report_data(make_run(tmp_path / "a", records))
    large = report.report_data(make_run(tmp_path / "b", records, reference={**REFERENCE, "macs": 2000}))
    assert large.generations[-1].hypervolume > small.generations[-1].hypervolume


def test_lineage_goes_back_to_the_first_population(history):
    data = report.report_data(history)
    assert data.lineage[9] == (9, 4, 8, 1, 6, 2)  # breadth first, through a cache hit (6)
    assert data.lineage[1] == (1,)
    assert report_html.lineage_text(data, 8) == "#8 mut_edge(#6) · #6 mut_edge(#2) [cache of #2] · #2 init"
    for chain in data.lineage.values():
        assert data.individuals[chain[-1]].generation == 0


def test_border_rule():
    lr = (1e-3, 0.5)
    # "within 5%" is measured in log space: 0.37 is 95% of the way from 1e-3 to 0.5 in log terms.
    assert rdata.border_edges([0.5, 0.40, 0.2], lr, log=True) == ["upper"]
    assert rdata.border_edges([0.5, 0.3, 0.2], lr, log=True) == []  # one of three is not most
    assert rdata.border_edges([1e-3, 1.2e-3, 0.5, 0.45], lr, log=True) == ["lower", "upper"]
    assert rdata.border_edges([0.48], lr, log=False) == ["upper"]
    assert rdata.border_edges([0.02], lr, log=True) == []  # 0.02 is near 0 linearly, mid-range in log
    assert rdata.border_edges([0.02], lr, log=False) == ["lower"]
    assert rdata.border_edges([0.0, 0.01, 0.3], (0.0, 0.5), log=False, hard=(0.0, 1.0)) == []  # dropout 0
    assert rdata.border_edges([], lr, log=True) == []


def test_best_candidates_are_the_top_tenth_at_least_three(history):
    data = report.report_data(history)
    assert data.best == (1, 9, 4)
    evaluations = [Record(i, 0, genome(i), "", Result(Status.OK, accuracy=i / 100, macs=1, params=1))
                   for i in range(100)]
    assert [e.id for e in rdata.best_candidates(evaluations)] == list(range(99, 89, -1))


def test_hparam_warning_names_the_gene_and_edge(history):
    data = report.report_data(history)
    warnings = {g.name: g.warning for g in data.genes}
    assert "upper edge (0.5)" in warnings["lr"] and "widen the range" in warnings["lr"]
    assert warnings["dropout"] is None  # all at 0, which is a hard limit
    assert warnings["weight_decay"] is None
    page = report.render_html(data)
    assert "class='warning'>⚠ learning rate: most of the 3 best candidates" in page


def test_no_hparam_section_when_the_run_has_none(tmp_path):
    data = report.report_data(make_run(tmp_path / "r", history_records()))
    assert data.genes == ()
    assert "plot-hparams" not in report.render_html(data)


# -- the page and the files ------------------------------------------------------------------

def test_figures_are_valid_plotly(history):
    import plotly.graph_objects as go

    data = report.report_data(history)
    figures = (report_html.objective_figure(data, "macs"), report_html.objective_figure(data, "params"),
               report_html.progress_figure(data), report_html.lineage_figure(data), report_html.hparam_figure(data))
    for figure in figures:
        go.Figure(figure)  # raises on any unknown property or bad value


def test_page_is_self_contained(history):
    from plotly.offline import get_plotlyjs

    page = report.render_html(report.report_data(history))
    assert page.count(get_plotlyjs()[:500]) == 1  # plotly.js embedded exactly once
    assert not re.search(r"<script[^>]+src=", page)  # nothing to fetch: opens offline
    assert page.count("Plotly.newPlot") == 5
    for i in report.report_data(history).front:  # each front genome as a copyable genome file
        assert f"<pre id='genome-{i}'>" in page
    file_text = html.unescape(re.search(r"<pre id='genome-8'>(.*?)</pre>", page, re.S).group(1))
    assert file_text.startswith("# source: evonas run history, evaluation 8\n")
    assert loads(file_text) == report.report_data(history).individuals[8].genome


def test_hover_says_who_how_and_what(history):
    data = report.report_data(history)
    hover = report_html._hover(data, data.individuals[9])
    for part in ("#9", "generation 2", "cx_uniform+mut_edge", "parents #4, #8", "accuracy 0.8000",
                 "MACs 400", "params 40", "lr 0.49", "rung 2 of 2", "|"):
        assert part in hover
    failed = report_html._hover(data, data.individuals[5])
    assert "failed</b>: out of memory" in failed


def test_write_report_writes_html_front_and_history(history):
    path = report.write_report(history.path)
    assert path == history.path / "report.html" and path.stat().st_size > 3_000_000
    front = pd.read_csv(history.path / "front.csv")
    assert list(front["id"]) == [1, 9, 4, 8, 2]
    assert front.loc[front["id"] == 9, "parents"].item() == "4 8"
    assert parse_genome(json.loads(front.loc[0, "genome"])) == report.report_data(history).individuals[1].genome
    assert len(pd.read_csv(history.history_file)) == 13  # every record, both rungs of 9 and the cache hit


def test_out_writes_only_that_file(history, tmp_path):
    before = listing(history.path)
    out = tmp_path / "elsewhere.html"
    assert report.write_report(history.path, out) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert listing(history.path) == before


def test_refresh_is_quick_for_hundreds_of_evaluations(tmp_path):
    rng = random.Random(0)
    records = [rec(i, i // 30, rng.random(), rng.randint(10, 1200), rng.randint(1, 120),
                   parents=[rng.randrange(i)] if i >= 30 else ()) for i in range(300)]
    run = make_run(tmp_path / "r", records)
    report.refresh(run)  # imports and first-time costs
    start = time.perf_counter()
    report.refresh(run)
    seconds = time.perf_counter() - start
    assert (run.path / "report.html").exists()
    assert seconds < 2.0, f"refresh took {seconds:.2f} s for 300 evaluations"  # ~0.3 s on 2 idle cores


def test_refresh_warns_instead_of_failing_the_run(history):
    with open(history.journal_file, "a") as f:
        f.write("garbage\n")
    history.append(rec(12, 3, 0.5, 100, 10, [1]))
    with pytest.warns(UserWarning, match="report not refreshed.*line 14 is damaged"):
        report.refresh(history)


def test_empty_run_gets_a_report(tmp_path):
    run = make_run(tmp_path / "r", [])
    report.write_report(run.path)
    assert "The front is empty" in (run.path / "report.html").read_text()
    assert report.front_rows(run.path) == []


# -- the commands -----------------------------------------------------------------------------

def test_front_json(history):
    result = CliRunner().invoke(cli, ["front", str(history.path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [1, 9, 4, 8, 2]
    assert rows[1] | {"genome": None, "description": None} == {
        "id": 9, "name": "", "generation": 2, "operator": "cx_uniform+mut_edge", "parents": [4, 8],
        "accuracy": 0.8, "macs": 400, "params": 40, "genome": None, "description": None}
    assert parse_genome(rows[1]["genome"]) == report.report_data(history).individuals[9].genome


def test_front_table(history):
    result = CliRunner().invoke(cli, ["front", str(history.path)])
    assert result.exit_code == 0, result.output
    assert "Pareto front (5 genomes)" in result.output and "0.9000" in result.output


def test_front_table_prints_brackets_as_they_are(capsys):
    report.print_front([{"id": 3, "generation": 1, "accuracy": 0.5, "macs": 1200, "params": 30, "name": "",
                         "operator": "mut_op", "description": "normal [a@0+b@1] / reduce [c@0+d@1]"}])
    assert "[a@0+b@1]" in capsys.readouterr().out  # not taken for rich markup


def listing(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


def bad_empty(path: Path) -> None:
    for p in path.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def bad_format(path: Path) -> None:
    (path / "meta.json").write_text(json.dumps({"format": 0, "seed": 0}))


def bad_journal(path: Path) -> None:
    lines = (path / "journal.jsonl").read_text().splitlines(keepends=True)
    (path / "journal.jsonl").write_text("".join(lines[:3] + ['{"id": 3, "generation": 0, "sta\n'] + lines[4:]))


def bad_reference(path: Path) -> None:
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "reference_point"}))


def bad_record(path: Path) -> None:
    with open(path / "journal.jsonl", "a") as f:
        f.write(json.dumps({"id": 12, "key": "k", "status": "ok"}) + "\n")


def bad_objectives(path: Path) -> None:
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "objectives": ["accuracy", "latency"]}))


@pytest.mark.parametrize("damage, message", [
    (bad_empty, "not an evonas run directory (missing meta.json)"),
    (bad_format, "run format 0 is not supported"),
    (bad_journal, "line 4 is damaged"),
    (bad_reference, "no usable reference_point"),
    (bad_record, "line 14: damaged record (generation must be an integer"),
    (bad_objectives, "objectives ['accuracy', 'latency'] are not names from"),
])
@pytest.mark.parametrize("command", [["report"], ["front"], ["front", "--json"]])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(history, capsys, damage, message, command):
    damage(history.path)
    before = listing(history.path)
    code = main([command[0], str(history.path), *command[1:]])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == "" and err.count("\n") == 1 and message in err, err
    assert listing(history.path) == before


def test_report_to_an_unwritable_place_is_one_line(history, capsys):
    assert main(["report", str(history.path), "--out", str(history.path / "no" / "such" / "r.html")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- a real run ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_run(real_run):
    records = real_run.journal()
    data = report.report_data(real_run)
    trained = {r["id"] for r in records if r.get("cache_of") is None}
    assert {e.id for e in data.evaluations} == trained
    assert [e.genome.name for e in data.from_files] == ["ResNet (NB201 cell)"]
    assert len(data.generations) == 2
    assert all(a.hypervolume <= b.hypervolume for a, b in zip(data.generations, data.generations[1:]))
    assert data.reference == tuple(float(real_run.meta()["reference_point"][o]) for o in data.objectives)
    assert data.front and [r["id"] for r in report.front_rows(real_run.path)] == list(data.front)
    report.write_report(real_run.path)
    assert len(pd.read_csv(real_run.path / "front.csv")) == len(data.front)


# -- in a real browser ---------------------------------------------------------------------------

PROBE_START = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push('error: ' + e.message); });
var __consoleError = console.error;
console.error = function () {
  window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  __consoleError.apply(console, arguments);
};
</script>"""
PROBE_END = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  var out = {errors: window.__errors, height: document.documentElement.scrollHeight, plots: {}};
  document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
    var drawn = {};
    gd.querySelectorAll('.scatterlayer .trace').forEach(function (g) {
      var name = g.__data__[0].trace.name;
      drawn[name] = (drawn[name] || 0) + g.querySelectorAll('.points path.point').length;
    });
    out.plots[gd.id] = drawn;
  });
  var macs = document.getElementById('plot-macs');
  Plotly.Fx.hover(macs, [{curveNumber: 0, pointNumber: 0}]);
  out.hover = macs.querySelector('.hoverlayer').textContent;
  var copy = document.querySelector('button.copy');
  if (copy) copy.click();
  var pre = document.createElement('pre');
  pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 1500); });
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True).stdout


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                    "(Debian package `chromium`; .ci/run installs it)")
@pytest.mark.parametrize("which", ["history", pytest.param("real_run", marks=pytest.mark.slow)])
def test_report_renders_in_chromium(which, request, tmp_path):
    run = request.getfixturevalue(which)
    data = report.report_data(run)
    page = report.render_html(data)
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<body>", "<body>" + PROBE_START, 1).replace("</body>", PROBE_END + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the page never finished drawing"
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["errors"] == []
    drawable = [e for e in data.evaluations if e.macs is not None]
    for plot in ("plot-macs", "plot-params"):
        drawn = probe["plots"][plot]
        assert drawn["evaluations"] + drawn.get("failed / infeasible (at 0)", 0) == len(drawable), drawn
        assert drawn[rdata.FRONT_TRACE] == len(data.front)
        assert drawn.get("genomes from files", 0) == len(data.from_files)
    assert set(probe["plots"]) >= {"plot-macs", "plot-params", "plot-progress", "plot-lineage"}
    first = next(e for e in data.evaluations if e.ok)
    assert f"#{first.id}" in probe["hover"] and "generation" in probe["hover"] and "parents" in probe["hover"]
    # A screenshot for a person to look at: next to the test's files and in artifacts/.
    report_file = tmp_path / "report.html"
    report_file.write_text(page)
    shot = tmp_path / f"report-{which}.png"
    chromium(tmp_path, f"--screenshot={shot}", f"--window-size=1400,{min(probe['height'], 12000)}",
             report_file.as_uri())
    assert shot.stat().st_size > 50_000
    (ROOT / "artifacts").mkdir(exist_ok=True)
    shutil.copy(shot, ROOT / "artifacts" / shot.name)
