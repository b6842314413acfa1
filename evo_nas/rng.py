"""Randomness a run owns: seeds derived from names, and RNG states as JSON for snapshots.   [stdlib]"""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """A 31-bit seed that depends only on `parts`: stable across processes, machines and
    Python versions (unlike hash()). derive_seed(run_seed, id) seeds evaluation `id`."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def eval_seed(run_seed: int, individual_id: int, repeat: int | None = None) -> int:
    """Each evaluation's own seed: stable across backends, workers and resumes; the first of
    several repeats has the seed a single evaluation has."""
    return derive_seed(run_seed, individual_id) if not repeat else derive_seed(run_seed, individual_id, repeat)


def state_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def state_from_json(data: object, rng: random.Random | None = None) -> random.Random:
    """A Random in the stored state (`rng` itself when given: DEAP draws from the module's).
    Raises ValueError or TypeError for a state that is not one."""
    version, internal, gauss = data
    rng = rng if rng is not None else random.Random()
    rng.setstate((version, tuple(internal), gauss))
    return rng
