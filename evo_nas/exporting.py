"""Files for people and other tools: a run's genomes (`export_run`), and a trained model as ONNX
(`export_onnx`, `onnx_parity`). docs/report.md says what is exported and why.
"""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import replace
from pathlib import Path

from evo_nas.errors import ConfigError, RunDirError
from evo_nas.files import atomic_write
from evo_nas.genome_io import save_genome
from evo_nas.records import Record
from evo_nas.store import RunDir, frame, rows

ONNX_OPSET = 17  # onnxruntime >= 1.13 and every current runtime run it; what the issue asked for
# summary.csv: store.COLUMNS of the exported records, with their rank on the front and their file.
SUMMARY_COLUMNS = ["rank", "id", "status", "accuracy", "macs", "params", "generation", "operator", "name",
                   "description", "file"]


# -- a run's genomes -----------------------------------------------------------------------

def export_run(run_dir: str | os.PathLike, front_only: bool = False,
               out: str | os.PathLike | None = None) -> list[Path]:
    """Write genome files of the run's evaluations (or its front) and summary.csv into `out`
    (default RUN_DIR/export). Returns the written paths, summary.csv last. Raises RunDirError
    for an unreadable run or nothing to export, ConfigError if a file would be overwritten."""
    run = RunDir.open(run_dir)
    history = run.history()
    front = [r.id for r in history.front(run.objectives())]
    chosen = [history.final(i) for i in front] if front_only else history.evaluations()
    if not chosen:
        what = "successful evaluation" if front_only else "evaluation"
        raise RunDirError(f"{run.path}: no {what} to export yet")
    rank = {ident: n for n, ident in enumerate(front, start=1)}
    width = max(2, len(str(len(front))))
    folder = Path(out) if out is not None else run.path / "export"
    names = {r.id: _file_name(r.id, rank.get(r.id), width) for r in chosen}
    targets = [folder / names[r.id] for r in chosen] + [folder / "summary.csv"]
    _refuse_overwrites(targets)
    genomes = {r.id: _sourced_genome(run, r) for r in chosen}  # bad records fail before any write
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{folder}: cannot create the export folder ({err.strerror})") from None
    for r in chosen:
        save_genome(genomes[r.id], folder / names[r.id])
    summary = frame(rows(chosen, history, front)).assign(rank=[rank.get(r.id, "") for r in chosen],
                                                         name=[genomes[r.id].name for r in chosen],
                                                         file=[names[r.id] for r in chosen])
    atomic_write(folder / "summary.csv", summary[SUMMARY_COLUMNS].to_csv(index=False))
    return targets


def _file_name(ident: int, rank: int | None, width: int) -> str:
    return f"id{ident}.yaml" if rank is None else f"front-{rank:0{width}d}-id{ident}.yaml"


def _refuse_overwrites(targets: list[Path]) -> None:
    for path in targets:
        if path.exists():
            raise ConfigError(f"{path}: already exists; not overwriting it (choose another --out)")


def _sourced_genome(run: RunDir, record: Record):
    """The record's genome, named and sourced so the file says where it came from."""
    ident = record.id
    genome = record.genome
    source = f"{run.path}#{ident}"
    if genome.source:  # a seed genome keeps its origin
        source += f" (seeded from {genome.source})"
    name = genome.name or f"{run.path.name}-id{ident}"
    return replace(genome, name=name, source=source)


# -- ONNX ------------------------------------------------------------------------------------

def export_onnx(model, input_shape: tuple[int, int, int], path: str | os.PathLike, opset: int = ONNX_OPSET) -> Path:
    """Write `model` (in eval mode; left so) as ONNX: input "images" (N, C, H, W) float32,
    output "logits" (N, classes), N dynamic. Written to a temporary file, checked with
    onnx.checker, then moved into place."""
    import onnx
    import torch

    path = Path(path)
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros((2, *input_shape), device=device)  # 2, not 1: no batch-1 special cases traced
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        # The exporter's notices (deprecation, constant folding of strided slices) are not
        # something a user of evonas can act on.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, **_torchscript_exporter())
    onnx.checker.check_model(str(tmp))
    os.replace(tmp, path)
    return path


def _torchscript_exporter() -> dict:
    """torch >= 2.5 has `dynamo=` (default True from 2.9); 2.4 has only the TorchScript exporter."""
    import torch

    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def onnx_parity(model, path: str | os.PathLike, input_shape: tuple[int, int, int], images: int = 8,
                seed: int = 0) -> float:
    """Largest absolute difference between the logits of onnxruntime (CPU) running `path` and
    of `model` (eval mode), on `images` random normal inputs (normalised images look like that)."""
    import numpy as np
    import onnxruntime
    import torch

    model.eval()
    x = torch.randn((images, *input_shape), generator=torch.Generator().manual_seed(seed))
    param = next(model.parameters(), None)
    with torch.no_grad():
        expected = model(x.to(param.device if param is not None else "cpu")).float().cpu().numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"images": x.numpy()})
    if got.shape != expected.shape:
        raise RuntimeError(f"{path}: onnxruntime gave logits {got.shape}, torch {expected.shape}")
    return float(np.abs(got - expected).max())
