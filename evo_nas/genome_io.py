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

import yaml

from evo_nas.errors import GenomeError
from evo_nas.genome import Genome, from_dict, to_dict
from evo_nas.spaces import cells, layers, nb201

_SOURCE = re.compile(r"# source: (.*)")  # the first line of a file: where the genome comes from
_STRUCTURE = {"cells": cells.validate_structure, "layers": layers.validate_structure,
              "nb201": nb201.validate_structure}


def validate_structure(genome: Genome, where: str = "genome") -> None:
    """The rules any genome of its kind follows, independent of a run's space settings."""
    _STRUCTURE[genome.space](genome, where)


def parse_genome(data: object, where: str = "genome") -> Genome:
    """A dict (from a file or the journal) -> a checked genome."""
    genome = from_dict(data, where)
    validate_structure(genome, where)
    return genome


def loads(text: str, where: str = "genome") -> Genome:
    """Parse a genome file's text. A leading `# source: ...` comment sets the genome's source."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark else "?"
        raise GenomeError(f"{where}: not valid YAML ({at}: {getattr(err, 'problem', err)})") from None
    if isinstance(data, dict) and "source" not in data and _SOURCE.match(text):
        data = {**data, "source": _SOURCE.match(text).group(1).strip()}
    return parse_genome(data, where)


def load_genome(path: str | os.PathLike) -> Genome:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GenomeError(f"{path}: no such genome file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GenomeError(f"{path}: cannot read genome file ({err.__class__.__name__}: {err})") from None
    return loads(text, str(path))


def dumps(genome: Genome) -> str:
    """The canonical text of a genome file."""
    d = to_dict(genome)
    lines = [f"# source: {genome.source}"] if genome.source else []
    lines.append(f"space: {d['space']}")
    if "name" in d:
        lines.append(f"name: {_scalar(d['name'])}")
    if genome.space == "cells":
        for cell in ("normal", "reduce"):
            lines.append(f"{cell}:")
            lines.append("  blocks:")
            lines += [f"  - [[{a}, {i}], [{b}, {j}]]" for (a, i), (b, j) in d[cell]["blocks"]]
            if "concat" in d[cell]:
                lines.append(f"  concat: {_flow(d[cell]['concat'])}")
    elif genome.space == "layers":
        lines.append("layers:")
        lines += [f"- {{height: {x['height']}, width: {x['width']}, filters: {x['filters']}, "
                  f"inputs: {_flow(x['inputs'])}}}" for x in d["layers"]]
    else:
        lines.append(f"arch: {_scalar(d['arch'])}")
    if "hparams" in d:
        lines.append("hparams:")
        lines += [f"  {k}: {_scalar(v)}" for k, v in d["hparams"].items()]
    return "\n".join(lines) + "\n"


def save_genome(genome: Genome, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write atomically; refuse to replace an existing file unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise GenomeError(f"{path}: already exists; not overwriting it")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps(genome), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _flow(values: list) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


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
