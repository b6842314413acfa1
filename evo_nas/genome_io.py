"""Genome files: YAML that people read and edit, with an exact round trip.   [pyyaml]

The writer emits one fixed layout (so file -> genome -> file is byte-identical for files it
wrote); the reader accepts any YAML with the same content, checks it, and rejects bad input
with one line naming the file and the field.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from evo_nas.errors import GenomeError
from evo_nas.files import atomic_write
from evo_nas.genome import LIMITS, Genome
from evo_nas.reading import load_yaml, read_text
from evo_nas.spaces import parse_genome

_SOURCE = re.compile(r"# source: (.*)")  # the first line of a file: where the genome comes from
PACKAGED = Path(__file__).resolve().parent / "genomes"  # published cells and baselines, shipped with evonas


def loads(text: str, where: str = "genome") -> Genome:
    """Parse a genome file's text. A leading `# source: ...` comment sets the genome's source."""
    data = load_yaml(text, where, GenomeError, "a genome")
    if isinstance(data, dict) and "source" not in data and _SOURCE.match(text):
        data = {**data, "source": _SOURCE.match(text).group(1).strip()}
    return parse_genome(data, where)


def load_genome(path: str | os.PathLike) -> Genome:
    """A genome file; a name that is not a file but one of the shipped genomes (`darts_v2`,
    `nasnet_a`, ...: see `packaged()`) reads that one."""
    path = Path(path)
    if not path.exists() and (PACKAGED / f"{path.stem}.yaml").is_file() and path.parent == Path("."):
        path = PACKAGED / f"{path.stem}.yaml"
    if not path.exists():
        raise GenomeError(f"{path}: no such genome file (shipped ones, by name: {', '.join(packaged())})")
    return loads(read_text(path, GenomeError, LIMITS["file_bytes"], "genome file"), str(path))


def packaged() -> list[str]:
    """The names of the genome files shipped with evonas."""
    return sorted(p.stem for p in PACKAGED.glob("*.yaml"))


def dumps(genome: Genome) -> str:
    """The canonical text of a genome file."""
    lines = [f"# source: {genome.source}"] if genome.source else []
    lines.append(f"space: {genome.space}")
    if genome.name:
        lines.append(f"name: {_scalar(genome.name)}")
    lines += genome.body_lines()
    if genome.hparams is not None:
        lines.append("hparams:")
        lines += [f"  {k}: {_scalar(v)}" for k, v in genome.hparams.to_dict().items()]
    return "\n".join(lines) + "\n"


def save_genome(genome: Genome, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write atomically; refuse to replace an existing file unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise GenomeError(f"{path}: already exists; not overwriting it")
    return atomic_write(path, dumps(genome))


def _scalar(value: object) -> str:
    """A YAML scalar that reads back as the same value."""
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid, unambiguous YAML scalar
    if isinstance(value, float):
        # PyYAML (YAML 1.1) reads "1e-05" as a string: give the mantissa a dot.
        mantissa, e, exponent = repr(value).partition("e")
        if e and "." not in mantissa:
            mantissa += ".0"
        return mantissa + (f"e{exponent}" if e else "")
    return str(value)
