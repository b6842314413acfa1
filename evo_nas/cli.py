"""The `evonas` command line. Each command builds a config object and calls the library.

Run options are generated from the config's fields (evo_nas.config): their help, choices and
defaults are written once, there. `--config FILE` feeds click's `default_map`, so precedence is:
defaults < presets < config file < flags. Bad input of any kind ends in one line on stderr and
exit code 2; Ctrl-C ends a run cleanly with exit code 130.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
import yaml

from evo_nas import config as configs
from evo_nas import spaces
from evo_nas.errors import ConfigError, UserError

# -- options generated from config fields -------------------------------------------------------

def _click_type(f: dataclasses.Field):
    kind = str(f.type)
    if f.metadata.get("choices"):
        return click.Choice([str(c) for c in f.metadata["choices"]])
    for prefix, t in (("int", click.INT), ("float", click.FLOAT)):
        if kind.startswith(prefix):
            return t
    return click.STRING


def _default_text(name: str, f: dataclasses.Field) -> str:
    """The default a setting gets, and which preset it comes from."""
    def show(v):
        return "none" if v is None else ",".join(map(str, v)) if isinstance(v, tuple) else str(v).lower() \
            if isinstance(v, bool) else str(v)

    if name in ("init_channels", "depth"):
        parts = []
        for entry in spaces.REGISTRY.values():
            if name in entry.skeleton_fields:
                values = {d: entry.proxy.get(d, {}).get(name, f.default) for d in ("cpu", "cuda")}
                parts.append(f"{entry.name} {show(values['cpu'])}" if values["cpu"] == values["cuda"] else
                             f"{entry.name} {show(values['cpu'])} (cpu) / {show(values['cuda'])} (cuda)")
        return "; ".join(parts)
    if name in configs.PRESETS["cpu"]:
        cpu, cuda = configs.PRESETS["cpu"][name], configs.PRESETS["cuda"][name]
        return f"{show(cpu)} (cpu preset) / {show(cuda)} (cuda preset)"
    return show(f.default)


def config_options(names):
    """One click option per named config setting, help and default from the field."""
    def decorate(func):
        for name in reversed(list(names)):
            _, f = configs.leaves()[name]
            flag = "--" + name.replace("_", "-")
            help_text = f"{f.metadata.get('help', '')} [default: {_default_text(name, f)}]"
            if str(f.type).startswith("bool"):
                option = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
            else:
                option = click.option(flag, name, type=_click_type(f), default=None, help=help_text)
            func = option(func)
        return func
    return decorate


RUN_OPTIONS = [name for name, (_, f) in configs.leaves().items() if f.metadata.get("cli", True)]


def _load_config_file(ctx: click.Context, _param, value: str | None):
    """--config: a YAML mapping of settings (flat names or config.yaml's sections), checked,
    then click's default_map."""
    if value is None:
        return None
    try:
        data = yaml.safe_load(Path(value).read_text())
    except OSError as err:
        raise ConfigError(f"{value}: cannot read config file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{value}: not valid YAML ({' '.join(str(err).split())})") from None
    flat = configs.flatten(data if data is not None else {}, value)  # names and types, against the file
    configs.from_mapping(flat, value)  # ranges, against the file
    defaults = {k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in flat.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["config_file"] = flat
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="evo-nas")
def cli():
    """evonas: genetic-algorithm neural architecture search."""


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config_file, is_eager=True,
              expose_value=False, help="YAML file of settings (flags override it)")
@config_options(RUN_OPTIONS)
def run(**options):
    """Search: train candidates briefly, keep the Pareto front, write runs/<name>/."""
    from evo_nas import runner
    from evo_nas.progress import Progress

    given = {k: v for k, v in options.items() if v is not None}
    _finished(runner.start(given, Progress()))


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
@click.option("--init-channels", type=click.INT, help="C (default: the space's published skeleton, cells 36)")
@click.option("--depth", type=click.INT, help="cells (default: cells 20; nb201 5 per stage)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def inspect(genome_file, input_shape, classes, init_channels, depth, as_json):
    """Describe a genome file's network: structure, output shape, params, MACs."""
    from evo_nas import inspection

    summary = inspection.inspect_file(genome_file, _shape(input_shape), classes, init_channels, depth)
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


TRAIN_OPTIONS = ["dataset", "data_dir", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule",
                 "warmup", "grad_clip", "label_smoothing", "cuda_graph", "aux_weight", "init_channels", "depth",
                 "auxiliary", "drop_path", "train_limit"]


@cli.command("train")
@click.argument("target")
@config_options(TRAIN_OPTIONS)
@click.option("--test-limit", type=click.IntRange(min=1), help="measure on a seeded subset of the test split")
@click.option("--device", type=click.Choice(configs.DEVICES), default="auto", show_default=True)
@click.option("--seed", type=click.INT, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="output folder (default: runs/train-<name>)")
def train_command(target, **options):
    """Train one architecture properly (GENOME_FILE or RUN_DIR#ID), report test accuracy, export it.

    The recipe: 50 epochs, batch 256, peak lr 0.2, cosine schedule after a 2% warm-up, in the
    final skeleton of the genome's space (cells: C=36, 20 cells, auxiliary head, drop path 0.2;
    nb201: C=16, 5 cells per stage); the defaults below are the search's, not this recipe's."""
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
