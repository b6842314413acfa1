"""The `evonas` command line. Each command builds a config object and calls the library.

Run options are defined once, from `RunConfig`'s fields. `--config FILE` feeds click's
`default_map`, so precedence is: defaults < config file < flags. Bad input of any kind ends
in one line on stderr and exit code 2; Ctrl-C ends a run cleanly with exit code 130.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import click

from evo_nas import config as configs
from evo_nas.errors import ConfigError, UserError

HELP = {
    "space": "search space", "dataset": "fashion-mnist, mnist, cifar10, cifar100 or npz:PATH",
    "data_dir": "folder with the data set files", "val_fraction": "share of the training set held out",
    "train_limit": "train on a seeded subset of this many images", "val_limit": "validate on this many images",
    "blocks": "cells: blocks per cell", "ops": "comma-separated op set", "min_layers": "layers: least depth",
    "max_layers": "layers: most depth", "kernel_sizes": "layers: comma-separated filter heights/widths",
    "filter_counts": "layers: comma-separated filter counts", "reductions": "stride-2 steps in the skeleton",
    "hparams": "search lr, weight decay, dropout, optimizer too",
    "seed_genomes": "comma-separated genome files put into the first population",
    "algorithm": "search algorithm", "population": "population size", "offspring": "children per generation",
    "sample": "aging: tournament size", "crossover": "nsga2: crossover share",
    "objectives": "comma-separated: accuracy, macs, params", "max_macs": "aging: MAC limit",
    "max_params": "aging: parameter limit", "generations": "generations after the first",
    "budget": "trained evaluations (instead of generations)", "backend": "who runs evaluations",
    "workers": "local backend: worker processes", "cpu_threads": "threads per CPU evaluation",
    "slots_per_gpu": "candidates in flight per GPU",
    "ray_address": "ray backend: cluster address", "device": "where candidates train",
    "init_channels": "skeleton width C", "layers": "cells in the skeleton (nb201: per stage)",
    "epochs": "training epochs per candidate (fractions allowed)", "batch_size": "training batch size",
    "lr": "peak learning rate at batch 256", "weight_decay": "L2 weight decay",
    "label_smoothing": "label smoothing", "optimizer": "sgd, rmsprop or adam", "cuda_graph": "auto, on or off",
    "time_limit": "seconds per evaluation (0: none)",
    "bn_recalibration": "images to recompute BatchNorm statistics on before validating",
    "fidelity": "none or sha (successive halving)",
    "sha_rungs": "successive-halving rungs", "seed": "run seed", "name": "run name (runs/<name>)",
    "runs_dir": "where runs are written", "report": "refresh report.html every generation",
}
CHOICES = {"space": configs.SPACES, "algorithm": configs.ALGORITHMS, "backend": configs.BACKENDS,
           "device": configs.DEVICES, "fidelity": configs.FIDELITIES}


def _click_type(f):
    kind = str(f.type)
    if f.name in CHOICES:
        return click.Choice(CHOICES[f.name])
    for prefix, t in (("bool", click.BOOL), ("int", click.INT), ("float", click.FLOAT)):
        if kind.startswith(prefix):
            return t
    return click.STRING


def run_options(func):
    """One click option per RunConfig field (tuples are comma-separated strings)."""
    for f in reversed(fields(configs.RunConfig)):
        flag = "--" + f.name.replace("_", "-")
        func = click.option(flag, f.name, type=_click_type(f), default=None, help=HELP.get(f.name, ""))(func)
    return func


def _load_config_file(ctx: click.Context, _param, value: str | None):
    """--config: a YAML mapping of RunConfig settings, checked, then click's default_map."""
    if value is None:
        return None
    import yaml

    try:
        data = yaml.safe_load(Path(value).read_text())
    except OSError as err:
        raise ConfigError(f"{value}: cannot read config file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{value}: not valid YAML ({' '.join(str(err).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{value}: must be a mapping of settings")
    configs.from_mapping(data, value)  # names, types and ranges, reported against the file
    defaults = {k.replace("-", "_"): ",".join(map(str, v)) if isinstance(v, list) else v for k, v in data.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="evo-nas")
def cli():
    """evonas: genetic-algorithm neural architecture search."""


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config_file, is_eager=True,
              expose_value=False, help="YAML file of settings (flags override it)")
@run_options
def run(**options):
    """Search: train candidates briefly, keep the Pareto front, write runs/<name>/."""
    from evo_nas import runner
    from evo_nas.progress import Progress

    cfg = configs.from_mapping({k: v for k, v in options.items() if v is not None}, "options")
    run_dir = runner.start(cfg, Progress())
    _finished(run_dir)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--generations", type=click.INT, help="extend to this many generations")
@click.option("--budget", type=click.INT, help="extend to this many trained evaluations")
@click.option("--backend", type=click.Choice(configs.BACKENDS), help="another backend (same results)")
@click.option("--workers", type=click.INT, help="local backend: worker processes")
@click.option("--report/--no-report", default=None, help="refresh report.html every generation")
def resume(run_dir, **overrides):
    """Continue a stopped or killed run exactly where it was."""
    from evo_nas import runner
    from evo_nas.progress import Progress

    changes = {k: v for k, v in overrides.items() if v is not None}
    _finished(runner.resume(run_dir, changes, Progress()))


@cli.command()
@click.argument("genome_file", type=click.Path(dir_okay=False))
@click.option("--input-shape", default="3x32x32", show_default=True, help="CxHxW")
@click.option("--classes", type=click.INT, default=10, show_default=True)
@click.option("--init-channels", type=click.INT, help="C (default: 36 for cells, 16 for nb201)")
@click.option("--layers", type=click.INT, help="cells (default: 20 for cells, 5 per stage for nb201)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def inspect(genome_file, input_shape, classes, init_channels, layers, as_json):
    """Describe a genome file's network: structure, output shape, params, MACs."""
    from evo_nas import inspection

    summary = inspection.inspect_file(genome_file, _shape(input_shape), classes, init_channels, layers)
    click.echo(json.dumps(summary, indent=2) if as_json else inspection.render(summary))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="HTML file to write (default: RUN_DIR/report.html)")
def report(run_dir, out):
    """Write the run's HTML report (self-contained), front.csv and history.csv."""
    from evo_nas import report as reports

    path = reports.write_report(run_dir, out)
    click.echo(f"report: {path}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
def front(run_dir, as_json):
    """Print the run's Pareto front."""
    from evo_nas import report as reports

    rows = reports.front_rows(run_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        reports.print_front(rows)


@cli.command()
@click.option("--space", type=click.Choice(["nb201"]), default="nb201", show_default=True)
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "imagenet16-120"]), default="cifar10",
              show_default=True)
@click.option("--algorithms", default="aging,nsga2,random", show_default=True, help="comma-separated")
@click.option("--seeds", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--budget", type=click.IntRange(min=1), default=150, show_default=True, help="evaluations per search")
@click.option("--out", type=click.Path(file_okay=False), default="runs/study", show_default=True,
              help="folder for the HTML and CSV")
def study(**options):
    """Compare search algorithms on the NAS-Bench-201 table over many seeds (CPU, seconds)."""
    from evo_nas import study as studies

    cfg = studies.StudyConfig(**{**options, "algorithms": tuple(a.strip() for a in options["algorithms"].split(","))})
    result = studies.run_study(cfg)
    for line in studies.summary_lines(result):
        click.echo(line)


@cli.command("train")
@click.argument("target")
@click.option("--dataset", help="data set (default: the run's, or fashion-mnist)")
@click.option("--data-dir", type=click.Path(file_okay=False), help="folder with the data set files")
@click.option("--epochs", type=click.IntRange(min=1), help="training epochs")
@click.option("--init-channels", type=click.IntRange(min=1), help="skeleton width C")
@click.option("--layers", type=click.IntRange(min=1), help="cells (nb201: cells per stage)")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--auxiliary/--no-auxiliary", default=None, help="auxiliary head (cells)")
@click.option("--drop-path", type=click.FloatRange(0, 1, max_open=True), help="drop-path probability (cells)")
@click.option("--device", type=click.Choice(configs.DEVICES), default="auto", show_default=True)
@click.option("--seed", type=click.INT, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="output folder (default: runs/train-<name>)")
def train_command(target, **options):
    """Train one architecture properly (GENOME_FILE or RUN_DIR#ID), report test accuracy, export it."""
    from evo_nas import fulltrain

    cfg = fulltrain.config_from_options(target, options)
    result = fulltrain.run(cfg)
    click.echo(fulltrain.summary(result))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--front", "front_only", is_flag=True, help="only the Pareto front (default: every evaluation)")
@click.option("--out", type=click.Path(file_okay=False), help="output folder (default: RUN_DIR/export)")
def export(run_dir, front_only, out):
    """Write genome files of a run's evaluations (or its front) and a summary table."""
    from evo_nas import exporting

    written = exporting.export_run(run_dir, front_only, out)
    click.echo(f"exported {len(written)} files to {written[0].parent if written else out}")


@cli.command()
@click.option("--device", type=click.Choice(configs.DEVICES), default="auto", show_default=True)
@click.option("--dataset", default="fashion-mnist", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--random-cells", type=click.IntRange(min=0), help="seeded random cells besides NASNet-A, DARTS-V2")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="default: the device's proxy")
@click.option("--train-limit", type=click.IntRange(min=1), help="training images (default: the proxy's)")
@click.option("--in-flight", help="comma-separated candidates in flight per process, e.g. 1,2,4")
@click.option("--out", type=click.Path(file_okay=False), default="bench-out", show_default=True)
def bench(**options):
    """Measure the evaluator against a plain training loop, and candidates in flight."""
    from evo_nas import bench as benches

    result = benches.run_bench(benches.bench_config(**options), log=lambda line: click.echo(line, err=True))
    click.echo(benches.table(result))
    click.echo(f"written: {', '.join(result.files)}")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input-shape: expected CxHxW such as 3x32x32, got {text!r}") from None
    if min(c, h, w) <= 0:
        raise ConfigError(f"--input-shape: sizes must be positive, got {text!r}")
    return c, h, w


def _finished(run_dir) -> None:
    path = run_dir.path
    lines = [f"done: {path}", f"  history  {path / 'history.csv'}"]
    for name in ("report.html", "front.csv"):
        if (path / name).exists():
            lines.append(f"  {name.split('.')[0]:<8} {path / name}")
    click.echo("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Entry point: click in non-standalone mode so every error is one line and a code."""
    try:
        cli.main(args=argv, prog_name="evonas", standalone_mode=False)
        return 0
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort as abort:  # click's wrapper around Ctrl-C
        hint = getattr(abort.__cause__, "hint", "nothing finished was lost")
        click.echo(f"evonas: stopped; {hint}", err=True)
        return 130
    except click.ClickException as err:
        where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) else "evonas: "
        click.echo(f"{where}{' '.join(err.format_message().split())}", err=True)
        return 2
    except UserError as err:
        click.echo(f"evonas: {err}", err=True)
        return 2
    except KeyboardInterrupt as stop:
        click.echo(f"evonas: stopped; {getattr(stop, 'hint', 'nothing was lost')}", err=True)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
