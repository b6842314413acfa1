"""The architecture's rules, checked: where heavy dependencies may be imported, that code names
no file outside the repository, and that a fourth search space needs one module and one
registry line."""

import json
import re
import subprocess
import sys
from pathlib import Path

from evo_nas import spaces
from evo_nas.genome_io import dumps, loads
from tests.chain_space import ENTRY, ChainGenome

ROOT = Path(__file__).resolve().parents[1]
LIGHT = ["evo_nas.algorithms", "evo_nas.pareto", "evo_nas.genome", "evo_nas.spaces", "evo_nas.store",
         "evo_nas.backends", "evo_nas.backends.local", "evo_nas.backends.ray", "evo_nas.search",
         "evo_nas.records", "evo_nas.config", "evo_nas.predictor", "evo_nas.genome_io", "evo_nas.report.data",
         "evo_nas.study",
         "evo_nas.runner", "evo_nas.progress", "evo_nas.exporting", "evo_nas.cli"]


def imported_after(modules: list[str]) -> set[str]:
    code = f"import importlib, json, sys; [importlib.import_module(m) for m in {modules!r}]; " \
           "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout))


def test_torch_and_plotly_stay_at_the_edges():
    assert not {"torch", "plotly"} & imported_after(LIGHT)
    assert "torch" not in imported_after(["evo_nas.report.html", "evo_nas.report.study_page"])
    assert "plotly" not in imported_after(["evo_nas.evaluate.engine", "evo_nas.evaluate.evaluator",
                                           "evo_nas.fulltrain"])


def test_no_code_refers_to_files_outside_the_repository():
    outside = re.compile(r"\.\./shared|shared/|performance-notes|known-cells|/work/")
    for path in [*(ROOT / "evo_nas").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "tools").rglob("*")]:
        if path.is_file() and path.name != "test_layout.py":
            assert not outside.search(path.read_text()), path


def test_a_fourth_space_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(spaces.REGISTRY, "chain", ENTRY)  # the registry line
    genome = ChainGenome(widths=(2, 4, 6), name="mine")
    assert loads(dumps(genome)) == genome  # the genome-file format follows from the entry

    from evo_nas import runner

    run = runner.start({"space": "chain", "length": 2, "choices": (2, 4), "population": 3, "generations": 1,
                        "train_limit": 64, "val_limit": 32, "batch_size": 32, "bn_recalibration": 32,
                        "report": True, "runs_dir": str(tmp_path), "name": "chain"})
    records = run.history().records
    assert len(records) == 6 and all(r.genome.space == "chain" and len(r.genome.widths) == 2 for r in records)
    assert {r.status.value for r in records} == {"ok"} and (run.path / "report.html").exists()
