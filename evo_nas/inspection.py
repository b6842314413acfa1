"""`evonas inspect`: what network a genome file describes, with its exact counts.   [torch]"""

from __future__ import annotations

import torch

from evo_nas import spaces
from evo_nas.build import build
from evo_nas.config import Skeleton
from evo_nas.evaluate.count import count_macs, count_params
from evo_nas.genome_io import load_genome


def inspect_file(path: str, input_shape: tuple[int, int, int], classes: int, init_channels: int | None = None,
                 depth: int | None = None) -> dict:
    """Structure, output shape, params and MACs of the genome in `path`, in the skeleton its
    space's published figures are quoted in (or the sizes given)."""
    genome = load_genome(path)
    entry = spaces.of(genome)
    sizes = dict(entry.inspect)
    sizes.update({k: v for k, v in (("init_channels", init_channels), ("depth", depth)) if v is not None})
    if "init_channels" not in entry.skeleton_fields:
        sizes.update(init_channels=None, depth=None)
    skeleton = Skeleton(input_shape=input_shape, classes=classes, **sizes)
    model = build(genome, skeleton).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *input_shape))
    key = entry.space.from_options({}, None, reductions=skeleton.reductions).key(genome)
    return {"file": str(path), "name": genome.name, "source": genome.source, "space": genome.space, "key": key,
            "description": genome.describe(), "structure": genome.structure(skeleton.reductions),
            "input_shape": list(input_shape), "output_shape": list(out.shape[1:]), "classes": classes,
            "skeleton": {k: v for k, v in sizes.items() if v is not None},
            "params": count_params(model), "macs": count_macs(model, input_shape)}


def render(s: dict) -> str:
    lines = [f"{s['name'] or s['file']}  ({s['space']})"]
    if s["source"]:
        lines.append(f"  source     {s['source']}")
    lines.append(f"  genome     {s['description']}")
    lines += [f"  {label:<10} {text}" for label, text in s["structure"].items()]
    skeleton = ", ".join(f"{k}={v}" for k, v in s["skeleton"].items()) or "from the genome"
    lines += [f"  skeleton   {skeleton}",
              f"  input      {'x'.join(map(str, s['input_shape']))} -> output {'x'.join(map(str, s['output_shape']))}",
              f"  params     {s['params']:,}",
              f"  MACs       {s['macs']:,} per image"]
    return "\n".join(lines)
