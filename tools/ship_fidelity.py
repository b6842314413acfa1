"""Copy an `evonas fidelity` measurement into the package, where runs with the same proxy find
it (evo_nas/noise.py): its config, its fidelity.json (every genome's accuracies included), the
machine and the command that made it.

    python tools/ship_fidelity.py RUN_DIR NAME "how it was run" [--machine "2-core ..."]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "evo_nas" / "data" / "fidelity"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("command")
    parser.add_argument("--machine", default=platform.processor() or platform.machine())
    args = parser.parse_args()
    meta = json.loads((args.run_dir / "meta.json").read_text())
    table = {"name": args.name, "command": args.command,
             "measured": f"{meta['created'][:10]}, {args.machine}, torch {meta['versions']['torch']}",
             "config": yaml.safe_load((args.run_dir / "config.yaml").read_text()),
             "fidelity": json.loads((args.run_dir / "fidelity.json").read_text())}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(OUT / f"{args.name}.json")


if __name__ == "__main__":
    main()
