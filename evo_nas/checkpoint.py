"""Trainings and models as safetensors files: a checkpoint carries its config, a model file its
genome and skeleton. No pickle anywhere.   [torch, safetensors]
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from evo_nas.build import build
from evo_nas.config import Skeleton
from evo_nas.errors import RunDirError
from evo_nas.files import atomic_write
from evo_nas.genome import Genome
from evo_nas.genome_io import dumps, loads
from evo_nas.reading import load_json

FORMAT = 1  # of checkpoint and model files; a different one is refused


def save_checkpoint(path: Path, info: dict, state: dict) -> None:
    """A Trainer's state_dict() and `info` (JSON: epoch, config, history) in one file, so that
    weights and epoch can never disagree."""
    tensors = {f"model/{k}": v for k, v in state["model"].items()}
    for index, entries in state["optimizer"].items():
        tensors.update({f"optimizer/{index}/{name}": t for name, t in entries.items()})
    tensors.update({f"rng/{name}": state[name] for name in ("generator", "torch_rng", "cuda_rng") if name in state})
    tensors["loss_sum"] = state["loss_sum"]
    text = json.dumps({"format": FORMAT, **info, "step": state["step"]}, sort_keys=True)
    write_tensors(path, tensors, {"format": "evonas-checkpoint", "checkpoint": text})


def read_info(path: Path) -> dict:
    """The JSON stored in a checkpoint's metadata, checked."""
    text = read_metadata(path).get("checkpoint", "")
    try:
        info = load_json(text, str(path), RunDirError)
    except RunDirError:
        info = None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "config" not in info:
        raise RunDirError(f"{path}: not an evonas checkpoint of format {FORMAT}; choose another --out")
    return info


def load_state(path: Path, info: dict) -> dict:
    """The Trainer state a checkpoint holds (CPU tensors)."""
    tensors = read_tensors(path)
    state: dict = {"step": info["step"], "model": {}, "optimizer": {}}
    for key, value in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "model":
            state["model"][rest] = value
        elif kind == "optimizer":
            index, _, name = rest.partition("/")
            state["optimizer"].setdefault(int(index), {})[name] = value
        elif kind == "rng":
            state[rest] = value
        elif kind == "loss_sum":
            state["loss_sum"] = value
    return state


def save_model(path: Path, model, genome: Genome, skeleton: Skeleton) -> None:
    meta = {"format": "evonas-model", "version": str(FORMAT), "genome": dumps(genome),
            "skeleton": json.dumps(dataclasses.asdict(skeleton))}
    write_tensors(path, model.state_dict(), meta)


def load_model(path: str | os.PathLike):
    """The model of a model.safetensors (or of the folder holding one), on the CPU, in eval
    mode: built from the genome and skeleton in its metadata, weights loaded strictly."""
    path = Path(path)
    path = path / "model.safetensors" if path.is_dir() else path
    meta = read_metadata(path)
    if meta.get("format") != "evonas-model":
        raise RunDirError(f"{path}: not an evonas model file")
    model = build(loads(meta["genome"], str(path)), Skeleton(**json.loads(meta["skeleton"])))
    model.load_state_dict(read_tensors(path))
    return model.eval()


def write_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    # safetensors stores dense row-major data: channels_last weights are copied to that layout
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, save(cpu, metadata=metadata))


def read_tensors(path: Path) -> dict:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise RunDirError(f"{path}: unreadable ({' '.join(str(err).split())}); delete it to start over") from None


def read_metadata(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise RunDirError(f"{path}: unreadable ({' '.join(str(err).split())}); delete it to start over") from None
