"""Which carried wheels `make gpu-check` installs: those none of whose top-level modules already
import here. A carried copy of something the GPU machine has (pytest, safetensors, ...) would
shadow its own, and the plugins it loads would then meet the wrong version.

    python tools/gpu_wheels.py WHL_DIR     the wheels to install, one a line; the skipped ones
                                           and why on stderr
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path


def modules(wheel: Path) -> set[str]:
    """The top-level modules a wheel installs: its top_level.txt, else the names at its root."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        listed = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        if listed:
            found = {line.strip() for line in archive.read(listed[0]).decode().splitlines()}
            if found - {""}:
                return found - {""}
    roots = {name.split("/")[0] for name in names}
    return {root.split(".")[0] for root in roots if not root.endswith((".dist-info", ".data"))}


def imports(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - anything that keeps it from importing means: carry it
        return False
    return True


def main(folder: str) -> None:
    for wheel in sorted(Path(folder).glob("*.whl")):
        present = sorted(name for name in modules(wheel) if imports(name))
        if present:
            print(f"not installing {wheel.name}: {', '.join(present)} already imports here", file=sys.stderr)
        else:
            print(wheel)


if __name__ == "__main__":
    main(sys.argv[1])
