"""`evonas inspect`: what network a genome file describes, with its exact counts.   [torch]"""

from __future__ import annotations

from evo_nas.genome import CellGenome, LayerGenome, describe
from evo_nas.genome_io import load_genome

# The skeletons published figures are quoted in (reference/known-cells.md).
DEFAULT_SKELETON = {"cells": {"init_channels": 36, "layers": 20}, "nb201": {"init_channels": 16, "layers": 5},
                    "layers": {}}


def inspect_file(path: str, input_shape: tuple[int, int, int], classes: int,
                 init_channels: int | None = None, layers: int | None = None) -> dict:
    import torch

    from evo_nas.build import Skeleton, build
    from evo_nas.evaluate.count import count_macs, count_params
    from evo_nas.spaces.cells import CellSpace, live_states
    from evo_nas.spaces.layers import LayerSpace, reduction_layers
    from evo_nas.spaces.nb201 import NB201Space

    genome = load_genome(path)
    sizes = dict(DEFAULT_SKELETON[genome.space])
    sizes.update({k: v for k, v in (("init_channels", init_channels), ("layers", layers)) if v is not None})
    skeleton = Skeleton(input_shape=input_shape, classes=classes, **sizes)
    model = build(genome, skeleton).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *input_shape))
    space = {"cells": CellSpace(blocks=_blocks(genome)), "layers": LayerSpace(min_layers=1, max_layers=10**6),
             "nb201": NB201Space()}[genome.space]
    summary = {"file": str(path), "name": genome.name, "source": genome.source, "space": genome.space,
               "key": space.key(genome), "description": describe(genome), "input_shape": list(input_shape),
               "output_shape": list(out.shape[1:]), "classes": classes, "skeleton": sizes,
               "params": count_params(model), "macs": count_macs(model, input_shape)}
    if isinstance(genome, CellGenome):
        summary["cells"] = {name: {"blocks": len(cell.blocks), "concat": list(cell.output_states()),
                                   "dead_states": sorted(set(range(2, len(cell.blocks) + 2)) - live_states(cell))}
                            for name, cell in (("normal", genome.normal), ("reduce", genome.reduce))}
    if isinstance(genome, LayerGenome):
        summary["strided_layers"] = sorted(reduction_layers(len(genome.layers), skeleton.reductions))
    return summary


def _blocks(genome) -> int:
    return len(genome.normal.blocks) if isinstance(genome, CellGenome) else 5


def render(s: dict) -> str:
    lines = [f"{s['name'] or s['file']}  ({s['space']})"]
    if s["source"]:
        lines.append(f"  source     {s['source']}")
    lines.append(f"  genome     {s['description']}")
    for cell, info in s.get("cells", {}).items():
        dead = f", dead states {info['dead_states']}" if info["dead_states"] else ""
        lines.append(f"  {cell:<10} {info['blocks']} blocks, output concat {info['concat']}{dead}")
    if "strided_layers" in s:
        lines.append(f"  stride 2   layers {s['strided_layers']}")
    skeleton = ", ".join(f"{k}={v}" for k, v in s["skeleton"].items()) or "from the genome"
    lines += [f"  skeleton   {skeleton}",
              f"  input      {'x'.join(map(str, s['input_shape']))} -> output {'x'.join(map(str, s['output_shape']))}",
              f"  params     {s['params']:,}",
              f"  MACs       {s['macs']:,} per image"]
    return "\n".join(lines)
