"""`evonas inspect`: what network a genome file describes, with its exact counts, and where its
mobile-setting counts fall among the published ImageNet architectures (`--compare`).   [torch]

The network is built on the meta device and counted by a shape pass (evo_nas.evaluate.count):
no weights are made and no convolution is computed, so it takes the same short time at any size.
"""

from __future__ import annotations

from pathlib import Path

import torch

from evo_nas import spaces
from evo_nas.config import Skeleton
from evo_nas.errors import ConfigError, UserError
from evo_nas.evaluate.count import build_meta, count, count_params, shape_pass
from evo_nas.genome import Genome
from evo_nas.genome_io import load_genome
from evo_nas.published import MOBILE_MULT_ADDS
from evo_nas.report import lecture, shell

DEFAULT_INPUT = ((3, 32, 32), 10)  # input shape and classes, unless a named skeleton gives them


def inspect_file(path: str, input_shape: tuple[int, int, int] | None = None, classes: int | None = None,
                 init_channels: int | None = None, depth: int | None = None, skeleton: str | None = None,
                 compare: bool = False, cpu_threads: int | None = None) -> dict:
    """Structure, output shape, params and MACs of the genome in `path`, in the skeleton its
    space's published figures are quoted in, or the named `skeleton` (sizes given override
    either); with `compare`, its counts in the mobile setting beside the published ones."""
    if cpu_threads is not None:
        torch.set_num_threads(cpu_threads)
    genome = load_genome(path)
    entry = spaces.of(genome)
    sk, shown = _skeleton(entry, skeleton, input_shape, classes, {"init_channels": init_channels, "depth": depth})
    model = build_meta(genome, sk)
    macs, output_shape = shape_pass(model, sk.input_shape)
    key = entry.space.from_options({}, None, reductions=sk.reductions).key(genome)
    summary = {"file": str(path), "name": genome.name, "source": genome.source, "space": genome.space, "key": key,
               "description": genome.describe(), "structure": genome.structure(sk.reductions),
               "input_shape": list(sk.input_shape), "output_shape": list(output_shape), "classes": sk.classes,
               "skeleton": shown, "params": count_params(model), "macs": macs}
    if compare:
        summary["compare"] = comparison(genome, Path(path).stem, entry, sk)
    return summary


def _skeleton(entry: spaces.SpaceEntry, name: str | None, input_shape, classes, given: dict) -> tuple[Skeleton, dict]:
    """The Skeleton to build in, and its settings as the summary shows them."""
    if name is not None and name not in entry.skeletons:
        known = ", ".join(entry.skeletons) or "none"
        raise ConfigError(f"--skeleton: {entry.name} genomes have no skeleton {name!r} (theirs: {known})")
    sizes = dict(entry.skeletons[name] if name else entry.inspect)
    shape, n = sizes.pop("input_shape", DEFAULT_INPUT[0]), sizes.pop("classes", DEFAULT_INPUT[1])
    sizes.update({k: v for k, v in given.items() if v is not None})
    if "init_channels" not in entry.skeleton_fields:
        sizes.update(init_channels=None, depth=None)
    try:
        sk = Skeleton(input_shape=input_shape or shape, classes=classes or n, **sizes)
    except ConfigError as err:
        hint = f" (named skeletons: --skeleton {' or '.join(entry.skeletons)})" if entry.skeletons and not name else ""
        raise ConfigError(f"{err}{hint}") from None
    shown = {"name": name} if name else {}
    return sk, {**shown, **{k: v for k, v in sizes.items() if v is not None}}


def comparison(genome: Genome, stem: str, entry: spaces.SpaceEntry, sk: Skeleton) -> dict:
    """The genome's counts in the mobile setting (the skeleton inspected, if it is an ImageNet
    one, else the space's `imagenet` skeleton) and the published table around them."""
    if sk.stem != "imagenet":
        if "imagenet" not in entry.skeletons:
            raise ConfigError(f"--compare: the published ImageNet figures are of cell networks; {entry.name} "
                              f"genomes have no imagenet skeleton")
        sk = Skeleton(**entry.skeletons["imagenet"])
    counts = count(genome, sk)
    own = {"name": genome.name or stem, "params": counts.params, "macs": counts.macs}
    return {"skeleton": {"init_channels": sk.init_channels, "depth": sk.depth,
                         "input_shape": list(sk.input_shape), "classes": sk.classes},
            "own": own, "mobile": counts.macs < MOBILE_MULT_ADDS, "rows": lecture.rows([own])}


def write_figure(summary: dict, out: str) -> Path | None:
    """The lecture's figures with this genome among them, as a page (None: no plotly; a warning said so)."""
    own = summary["compare"]["own"]
    title = f"{own['name']} among the published ImageNet architectures"
    try:
        return shell.write(Path(out), lambda: shell.render(title, title, (lecture.section([own]),)))
    except OSError as err:
        raise UserError(f"--figure: cannot write {out} ({err.strerror})") from None


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
    if "compare" in s:
        lines += ["", *render_comparison(s["compare"])]
    return "\n".join(lines)


def render_comparison(c: dict) -> list[str]:
    sk, own = c["skeleton"], c["own"]
    fits = "under" if c["mobile"] else "over"
    lines = [f"ImageNet, mobile setting: {own['name']} in DARTS' ImageNet network (C={sk['init_channels']}, "
             f"{sk['depth']} cells, {'x'.join(map(str, sk['input_shape'][1:]))}) has {own['params'] / 1e6:.2f}M "
             f"params and {own['macs'] / 1e6:.0f}M MACs, {fits} the 600M limit",
             f"  {'architecture':<22}{'top-1 %':>8}{'params M':>10}{'mult-adds M':>13}"
             f"{'evonas params':>15}{'evonas MACs':>13}  source"]
    for r in c["rows"]:
        lines.append(f"  {r['name']:<22}{_cell(r['top1'], '.1f', 8)}{_cell(r['params_m'], '.1f', 10)}"
                     f"{_cell(r['mult_adds_m'], '.0f', 13)}{_cell(r['evonas_params'], ',', 15)}"
                     f"{_cell(r['evonas_macs'], ',', 13)}  {r['source']}")
    lines.append("  (papers' own figures; evonas counts conv + linear MACs in DARTS' ImageNet network, which for "
                 "NASNet-A and AmoebaNet-A is not their papers' skeleton: docs/reference-cells.md)")
    return lines


def _cell(value, spec: str, width: int) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}}"
