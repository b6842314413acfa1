"""Genomes as frozen values: the base each search space's genome type extends, the
hyperparameter genes, and the checks that read a genome's parts from plain data.   [stdlib only]

A genome says *what* network to build, never how (except through its hyperparameter genes).
It is hashable, printable and converts to and from a plain dict, which is what genome files
and the journal store. Each space's genome type lives in its module under `evo_nas.spaces`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from evo_nas.errors import SHORT, GenomeError, short

OPTIMIZERS = ("sgd", "rmsprop", "adam")
# What a genome may ask for, checked before anything is built (a typo must not allocate gigabytes).
LIMITS = {"file_bytes": 1 << 20, "blocks": 32, "layers": 256, "filters": 4096, "kernel": 31}


@dataclass(frozen=True)
class HParams:
    """Training hyperparameters carried as genes (off unless the space enables them)."""

    lr: float
    weight_decay: float
    dropout: float
    optimizer: str

    def to_dict(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "dropout": self.dropout,
                "optimizer": self.optimizer}

    @classmethod
    def from_dict(cls, data: object, where: str) -> HParams:
        d = mapping(data, where, "hparams")
        no_unknown_keys(d, {f.name for f in fields(cls)}, where, "hparams")
        numbers = {key: number(d.get(key)) for key in ("lr", "weight_decay", "dropout")}
        for key, value in numbers.items():
            if value is None:
                raise GenomeError(f"{where}: hparams.{key}: must be a number, got {short(d.get(key))}")
        if not isinstance(d.get("optimizer"), str) or d["optimizer"] not in OPTIMIZERS:
            raise GenomeError(f"{where}: hparams.optimizer: must be one of {', '.join(OPTIMIZERS)}, "
                              f"got {short(d.get('optimizer'))}")
        for key, ok in (("lr", 0 < numbers["lr"] <= 100), ("weight_decay", 0 <= numbers["weight_decay"] <= 1),
                        ("dropout", 0 <= numbers["dropout"] < 1)):
            if not ok:
                raise GenomeError(f"{where}: hparams.{key}: {numbers[key]} is out of range")
        return cls(**numbers, optimizer=d["optimizer"])


@dataclass(frozen=True)
class Genome:
    """What every genome has: its space's name, optional hyperparameter genes, and where it
    came from (a published cell, a file: not part of its identity). A space's genome type adds
    its architecture fields and the five methods below."""

    space: ClassVar[str] = ""
    BODY: ClassVar[tuple[str, ...]] = ()  # the keys of the architecture in the dict form
    hparams: HParams | None = field(default=None, kw_only=True)
    name: str = field(default="", kw_only=True, compare=False)
    source: str = field(default="", kw_only=True, compare=False)

    # -- each space's genome type provides these -------------------------------------------
    def body(self) -> dict:
        """The architecture as plain data, under the keys BODY."""
        raise NotImplementedError

    @classmethod
    def from_body(cls, d: dict, where: str, **meta) -> Genome:
        """The genome from the dict form (BODY keys present), checking types."""
        raise NotImplementedError

    def check(self, where: str) -> None:
        """The rules every genome of this kind follows, whatever a run's settings."""
        raise NotImplementedError

    def describe(self) -> str:
        """A compact one-line description, for hover text and tables."""
        raise NotImplementedError

    def body_lines(self) -> list[str]:
        """The architecture in the genome-file layout (YAML lines)."""
        raise NotImplementedError

    def structure(self, reductions: int) -> dict[str, str]:
        """What `evonas inspect` says of the structure beyond the description: label -> text."""
        return {}

    # -- shared ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict (JSON/YAML-ready); `name`/`source` are included when set."""
        out: dict = {"space": self.space}
        if self.name:
            out["name"] = self.name
        if self.source:
            out["source"] = self.source
        out.update(self.body())
        if self.hparams is not None:
            out["hparams"] = self.hparams.to_dict()
        return out

    def anonymous(self):
        """The same architecture without name and source, as an operator's child."""
        return replace(self, name="", source="")


def from_dict(types: dict[str, type[Genome]], data: object, where: str) -> Genome:
    """Plain dict -> genome of the type its `space` names, checking structure and types (not
    a run's rules). `where` names the file or record in errors: "<where>: <field>: <problem>"."""
    d = mapping(data, where, "")
    space = d.get("space")
    if not isinstance(space, str) or space not in types:  # a list there is unhashable
        raise GenomeError(f"{where}: space: must be one of {', '.join(types)}, got {short(space)}")
    cls = types[space]
    no_unknown_keys(d, {"space", "name", "source", "hparams", *cls.BODY}, where, "")
    for key in cls.BODY:
        if key not in d:
            raise GenomeError(f"{where}: {key}: missing")
    meta = {"name": _opt_str(d, "name", where), "source": _opt_str(d, "source", where),
            "hparams": HParams.from_dict(d["hparams"], where) if d.get("hparams") is not None else None}
    return cls.from_body(d, where, **meta)


# -- reading parts of a genome from plain data, with one-line errors ------------------------

def mapping(data: object, where: str, path: str) -> dict:
    if not isinstance(data, dict):
        raise GenomeError(f"{where}: {path or 'top level'}: must be a mapping, got {type(data).__name__}")
    return data


def no_unknown_keys(d: dict, allowed: set, where: str, path: str) -> None:
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        prefix = f"{path}." if path else ""
        raise GenomeError(f"{where}: {prefix}{unknown[0][:SHORT]}: unknown key (allowed: {', '.join(sorted(allowed))})")


def int_list(data: object, where: str, path: str) -> list[int]:
    if not isinstance(data, list) or not all(is_int(x) for x in data):
        raise GenomeError(f"{where}: {path}: must be a list of integers, got {short(data)}")
    return data


def is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def number(value: object) -> float | None:
    """A finite float, also from a string: YAML 1.1 reads `1e-4` (no dot) as a string."""
    if isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def at_most(value: int, limit: str, at: str) -> None:
    """GenomeError unless `value` is within LIMITS[limit]."""
    if value > LIMITS[limit]:
        raise GenomeError(f"{at}: {short(value)} is more than evonas allows ({LIMITS[limit]:,} {limit})")


def _opt_str(d: dict, key: str, where: str) -> str:
    value = d.get(key, "")
    if not isinstance(value, str):
        raise GenomeError(f"{where}: {key}: must be a string")
    return value
