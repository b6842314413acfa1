"""The gpu check's last words: what its search did, and the verdict on the whole visit.

    python tools/gpu_summary.py search  WORK                 WORK/search.json, from the journal
                                                             of WORK/runs/gpu-search
    python tools/gpu_summary.py summary WORK DEVICE BUDGET STARTED COMMIT STEP...
                                                             WORK/summary.json: every step's
                                                             record, and ok

The visit is ok when every step ran and passed, no probe or bench evaluation failed, and every
measured evaluation took the device's path (the CUDA graph on CUDA, eager on the CPU): a
fallback to eager would otherwise pass for the graph path's figures. Exit code 0.
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

SEARCH = "runs/gpu-search/journal.jsonl"


def search(work: Path) -> None:
    records = [json.loads(line) for line in (work / SEARCH).read_text().splitlines() if line.strip()]
    ok = [r for r in records if r.get("status") == "ok"]
    summary = {"evaluations": len(records), "generations": dict(collections.Counter(r["generation"] for r in records)),
               "status": dict(collections.Counter(r.get("status") for r in records)),
               "paths": dict(collections.Counter(r.get("path") for r in ok if not r.get("cache_of"))),
               "fallbacks": sorted({r["fallback"] for r in ok if r.get("fallback")}),
               "errors": sorted({r["error"] for r in records if r.get("error")})[:10],
               "accuracy_max": max((r["accuracy"] for r in ok), default=None),
               "images_per_s": sorted(r["images_per_s"] for r in ok if r.get("images_per_s")),
               "memory_reserved": [r.get("memory_reserved") for r in records if not r.get("cache_of")]}
    (work / "search.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("search:", json.dumps(summary)[:1500])


def measured(work: Path):
    """(where, path, why, failed) of every measured evaluation the probes and the bench wrote."""
    def read(name: str) -> dict:
        path = work / name
        return json.loads(path.read_text()) if path.is_file() else {}

    for variant in read("probe-proxy.json").get("variants", []):
        for i, r in enumerate(variant["runs"]):
            yield f"probe-proxy {variant['variant']} #{i}", r["path"], r["why"], r["status"] != "ok"
    agreement = read("probe-agreement.json")
    for phase in ("alone", "in flight", "alone again"):
        for i, r in enumerate(agreement.get(phase, {}).get("runs", [])):
            yield f"probe-agreement {phase} #{i}", r["path"], r["why"], r["status"] != "ok"
    for flag, runs in read("probe-cudnn.json").get("runs", {}).items():
        for i, r in enumerate(runs):
            yield f"probe-cudnn {flag} #{i}", r["path"], r["why"], r["status"] != "ok"
    bench = read("bench/bench.json")
    for c in bench.get("candidates", []):
        for path in c["paths"]:
            yield f"bench {c['name']}", path, "; ".join(c["fallbacks"]), c["failed"] > 0
    for row in bench.get("in_flight", []):
        for i, m in enumerate(row["measurements"]):
            for path in m["paths"]:
                yield f"bench in flight {row['k']} #{i}", path, "; ".join(m.get("fallbacks", [])), m["failed"] > 0
    for path, _ in read("search.json").get("paths", {}).items():
        yield "search", path, "; ".join(read("search.json").get("fallbacks", [])), False


def summary(work: Path, device: str, budget: int, started: int, commit: str, steps: list[str]) -> None:
    records = [json.loads((work / "steps" / f"{step}.json").read_text()) for step in steps]
    expected = "eager" if device == "cpu" else "graph"
    rows = list(measured(work))
    off = [{"where": where, "path": path, "why": why} for where, path, why, failed in rows
           if path not in (expected, None, "None")]
    failed = sorted({where for where, _, _, bad in rows if bad})
    not_ok = [r["step"] for r in records if r["status"] != "ok"]
    data = {"ok": bool(records) and not not_ok and not off and not failed, "device": device, "commit": commit,
            "started": time.strftime("%FT%T", time.localtime(started)), "seconds": int(time.time()) - started,
            "budget_s": budget, "steps_not_ok": not_ok, "evaluations_measured": len(rows),
            "expected_path": expected, "off_path": off, "failed_evaluations": failed, "steps": records}
    (work / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    verdict = "ok" if data["ok"] else (f"NOT ok: steps {not_ok}, {len(off)} evaluations off the {expected} path, "
                                       f"{len(failed)} with failures")
    print(f"gpu check {verdict} ({len(rows)} evaluations measured, {data['seconds']} s of {budget})")


if __name__ == "__main__":
    if sys.argv[1] == "search":
        search(Path(sys.argv[2]))
    else:
        work, device, budget, started, commit, *steps = sys.argv[2:]
        summary(Path(work), device, int(budget), int(started), commit, steps)
