"""Reading a run's journal in tests as the raw lines it holds, beside the typed History that
production reads: what was written, in order, repeats and all."""

import json
from pathlib import Path

# Journal fields that differ between otherwise identical runs: left out when two runs are compared
TIMING_FIELDS = ("wall_time", "images_per_s", "finished", "memory_reserved", "screen_s")


def journal_lines(run_dir) -> list[dict]:
    """Every line of `run_dir`/journal.jsonl as a dict, in the order written."""
    return [json.loads(line) for line in Path(run_dir, "journal.jsonl").read_text().splitlines() if line.strip()]


def without_timings(run_dir) -> list[dict]:
    """The journal's lines without TIMING_FIELDS: what two runs that should agree must agree on."""
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in journal_lines(run_dir)]
