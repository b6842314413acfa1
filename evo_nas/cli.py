"""The `evonas` command line. Each command builds a config object and calls the library.

Run options are generated from the config's fields (evo_nas.config): their help, choices and
defaults are written once, there. `--config FILE` feeds click's `default_map`, so precedence is:
defaults < presets < config file < flags. Bad input of any kind ends in one line on stderr and
exit code 2; Ctrl-C ends a run cleanly with exit code 130.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import warnings
from pathlib import Path

import click
import yaml

from evo_nas import config as configs
from evo_nas import spaces
from evo_nas.errors import ConfigError, Interrupted, UserError

# -- options generated from config fields -------------------------------------------------------

class _OrNone(click.ParamType):
    """An int or float setting that may also be `none` (no limit; over a preset's value)."""

    def __init__(self, base: click.ParamType):
        self.base, self.name = base, f"{base.name}|none"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.lower() in ("none", "null"):
            return "none"
        return self.base.convert(value, param, ctx)


def _click_type(f: dataclasses.Field):
    kind = str(f.type)
    if f.metadata.get("choices"):
        return click.Choice([str(c) for c in f.metadata["choices"]])
    for prefix, t in (("int", click.INT), ("float", click.FLOAT)):
        if kind.startswith(prefix):
            return _OrNone(t) if "None" in kind else t
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


def config_options(names, defaults: dict | None = None):
    """One click option per named config setting, help and default from the field (or from
    `defaults`: name -> the text to show, for a command whose defaults are its own)."""
    def decorate(func):
        for name in reversed(list(names)):
            _, f = configs.leaves()[name]
            flag = "--" + name.replace("_", "-")
            shown = (defaults or {}).get(name) or _default_text(name, f)
            help_text = f"{f.metadata.get('help', '')} [default: {shown}]"
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


RUN_HELP = ("Search: train candidates briefly, keep the Pareto front, write runs/<name>/.\n\n"
            "The fitness of each space (MACs and parameters are exact counts):\n\n"
            + "\n\n".join(f"{e.name}: {e.fitness}" for e in spaces.REGISTRY.values()))


@cli.command(help=RUN_HELP)
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config_file, is_eager=True,
              expose_value=False, help="YAML file of settings (flags override it)")
@click.option("--dry-run", is_flag=True, help="print the resolved config and the work it plans, write nothing")
@config_options(RUN_OPTIONS)
def run(dry_run, **options):
    from evo_nas import runner
    from evo_nas.progress import Progress

    given = {k: v for k, v in options.items() if v is not None}
    if dry_run:
        cfg = runner.plan(given)
        click.echo(yaml.safe_dump(configs.to_dict(cfg), sort_keys=False).rstrip())
        click.echo("# planned, at most: " + ", ".join(f"{k} {v}" for k, v in runner.estimate(cfg).items()))
        return
    _finished(runner.start(given, Progress()))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--generations", type=click.INT, help="extend to this many generations")
@click.option("--budget", type=click.INT, help="extend to this many trained evaluations")
@click.option("--backend", type=click.Choice(configs.BACKENDS), help="another backend (same results)")
@click.option("--workers", type=click.INT, help="local backend: worker processes")
@click.option("--report/--no-report", default=None, help="refresh report.html every generation")
def resume(run_dir, **overrides):
    """Continue a stopped or killed run (or fidelity measurement) exactly where it was."""
    from evo_nas import fidelity, runner
    from evo_nas.progress import Progress
    from evo_nas.store import RunDir

    changes = {k: v for k, v in overrides.items() if v is not None}
    if fidelity.is_fidelity_run(RunDir.open(run_dir)):
        _fidelity_done(fidelity.resume(RunDir.open(run_dir), log=lambda line: click.echo(line, err=True)))
        return
    _finished(runner.resume(run_dir, changes, Progress()))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--name", help="the new run's name [default: RUN_DIR's name + '-refined']")
@click.option("--generations", type=click.IntRange(min=0), help="the new run's generations [default: RUN_DIR's]")
@click.option("--budget", type=click.IntRange(min=1), help="the new run's trained evaluations [default: RUN_DIR's]")
@click.option("--seed", type=click.INT, help="the new run's seed [default: RUN_DIR's]")
@click.option("--dry-run", is_flag=True, help="print the new ranges and why, start nothing")
def refine(run_dir, dry_run, **overrides):
    """A new run whose hyperparameter ranges are narrowed around RUN_DIR's best quarter (and widened
    past a border the best values sit at); prints the new ranges and why."""
    from evo_nas import refine as refining
    from evo_nas import runner
    from evo_nas.progress import Progress

    plan = refining.plan(run_dir, overrides)
    for line in refining.describe(plan):
        click.echo(line)
    if not dry_run:
        _finished(runner.start(plan.options, Progress()))


@cli.command("fidelity")
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config_file, is_eager=True,
              expose_value=False, help="YAML file of run settings (flags override it)")
@click.option("--genomes", type=click.IntRange(4, 1000), default=16, show_default=True,
              help="genomes sampled from the space")
@click.option("--from-run", type=click.Path(file_okay=False), help="measure this run's Pareto front instead")
@click.option("--genome-files", help="measure these comma-separated genome files instead")
@click.option("--reference-factor", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="the reference trains on this many times the proxy's training images")
@click.option("--reference-val", type=click.IntRange(min=1), default=5000, show_default=True,
              help="validation images of the reference")
@click.option("--reference/--no-reference", default=True, show_default=True,
              help="--no-reference: the proxy's repeatability only, a quick first look")
@config_options(RUN_OPTIONS, {"repeats": "2 (seeds per genome and fidelity)"})
def fidelity_command(genomes, from_run, genome_files, reference_factor, reference_val, reference, **options):
    """Measure whether the proxy (the settings of `evonas run`) ranks architectures: each genome
    trained with several seeds at the proxy and at a reference fidelity; repeatability (seed vs
    seed), validity (proxy vs reference) against the reference's own repeatability, params, MACs
    and the NASWOT score as free predictors, bootstrap 95% intervals, cost. Writes fidelity.csv,
    .json and .html into runs/<name>/; `evonas resume` continues it."""
    from evo_nas import fidelity

    files = tuple(f.strip() for f in genome_files.split(",") if f.strip()) if genome_files else ()
    fid = fidelity.FidelityConfig(genomes=genomes, from_run=from_run, genome_files=files,
                                  reference_factor=reference_factor, reference_val=reference_val,
                                  reference=reference)
    given = {k: v for k, v in options.items() if v is not None}
    _fidelity_done(fidelity.start(given, fid, log=lambda line: click.echo(line, err=True)))


def _fidelity_done(run) -> None:
    from evo_nas import fidelity

    summary = json.loads((run.path / "fidelity.json").read_text())
    click.echo("\n".join([*fidelity.lines(summary), f"written: {run.path}/fidelity.csv, fidelity.json, "
                                                      f"fidelity.html"]))


NAMED_SKELETONS = sorted({name for entry in spaces.REGISTRY.values() for name in entry.skeletons})


@cli.command()
@click.argument("genome_file", type=click.Path(dir_okay=False))
@click.option("--skeleton", "skeleton", type=click.Choice(NAMED_SKELETONS),
              help="a named skeleton of the genome's space (cells: imagenet, DARTS' ImageNet network: two "
                   "stride-2 stems, C=48, 14 cells, 224x224, 1000 classes) [default: the one its published "
                   "figures are quoted in]")
@click.option("--input-shape", help="CxHxW [default: 3x32x32, or the named skeleton's]")
@click.option("--classes", type=click.IntRange(min=1), help="[default: 10, or the named skeleton's]")
@click.option("--init-channels", type=click.INT, help="C (default: the space's published skeleton, cells 36)")
@click.option("--depth", type=click.INT, help="cells (default: cells 20; nb201 5 per stage)")
@click.option("--compare", is_flag=True, help="also its counts in the ImageNet mobile setting, among the published "
                                              "architectures' (cell genomes)")
@click.option("--figure", type=click.Path(dir_okay=False),
              help="write the comparison's two figures (top-1 against mult-adds and against parameters) to this "
                   "HTML file (implies --compare)")
@click.option("--cpu-threads", type=click.IntRange(min=1), help="torch threads [default: this machine's cores]")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def inspect(genome_file, skeleton, input_shape, classes, init_channels, depth, compare, figure, cpu_threads,
            as_json):
    """Describe a genome file's network: structure, output shape, params, MACs."""
    from evo_nas import inspection

    summary = inspection.inspect_file(genome_file, _shape(input_shape) if input_shape else None, classes,
                                      init_channels, depth, skeleton, compare or figure is not None, cpu_threads)
    if figure is not None:
        inspection.write_figure(summary, figure)
    click.echo(json.dumps(summary, indent=2) if as_json else inspection.render(summary))
    if figure is not None and not as_json:
        click.echo(f"figure: {figure}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="HTML file to write, with OUT-front.csv and OUT-history.csv beside it (default: "
                   "RUN_DIR/report.html, front.csv, history.csv); never replaces a file evonas did not write")
@click.option("--plotly-js", type=click.Choice(["inline", "shared"]), default="inline", show_default=True,
              help="inline: the page works alone (4.8 MB); shared: one plotly.min.js beside the page(s)")
def report(run_dir, out, plotly_js):
    """Write the run's HTML report, its front and its history as CSV."""
    from evo_nas import report as reports

    for kind, path in reports.write_report(run_dir, out, plotly_js).items():
        click.echo(f"{kind + ':':<10} {path}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any free port")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
def watch(run_dir, port, host):
    """Serve the run's report on localhost, updated after every evaluation (Ctrl-C stops)."""
    from evo_nas import watch as watching

    watching.serve(run_dir, host, port, log=click.echo)


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
@click.option("--algorithms", default="aging,nsga2,random", show_default=True,
              help="comma-separated; aging+predictor and nsga2+predictor screen children with the predictor")
@click.option("--seeds", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--first-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="seeds first-seed .. first-seed + seeds - 1 (tune on others than you report)")
@click.option("--budget", type=click.IntRange(min=1), default=150, show_default=True, help="evaluations per search")
@click.option("--noise", type=float, default=0.0, show_default=True,
              help="aging's and NSGA-II's selection noise level, as `run --noise`")
@click.option("--operators", type=click.Choice(configs.OPERATOR_SETS), default=configs.SearchConfig.operators,
              show_default=True, help="the variation operators of every algorithm")
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
                 "auxiliary", "drop_path", "train_limit", "cpu_threads"]


def _train_defaults() -> dict:
    """What `evonas train` uses where no option is given: its recipe and each space's final skeleton."""
    recipe = configs.FULL_TRAINING
    shown = {f.name: str(getattr(recipe, f.name)).lower() for f in dataclasses.fields(recipe)}
    for name in ("init_channels", "depth", "auxiliary", "drop_path"):
        values = [f"{e.name} {str(e.final[name]).lower()}" for e in spaces.REGISTRY.values() if name in e.final]
        shown[name] = "; ".join(values) + " (the space's final skeleton)" if values else "none"
    shown.update(dataset="the run's, else fashion-mnist", train_limit="the whole training split",
                 cpu_threads="this machine's cores")
    return shown


@cli.command("train")
@click.argument("target")
@config_options(TRAIN_OPTIONS, _train_defaults())
@click.option("--skeleton", "skeleton_name", type=click.Choice(NAMED_SKELETONS),
              help="a named skeleton instead of the space's final one (cells: imagenet, DARTS' ImageNet network; "
                   "it needs images over 64 px, e.g. an npz data set)")
@click.option("--test-limit", type=click.IntRange(min=1), help="measure on a seeded subset of the test split")
@click.option("--device", type=click.Choice(configs.DEVICES), default="auto", show_default=True)
@click.option("--seed", type=click.INT, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="output folder (default: runs/train-<name>)")
def train_command(target, **options):
    """Train one architecture properly (GENOME_FILE or RUN_DIR#ID), report test accuracy, export it.

    The recipe: 50 epochs, batch 256, peak lr 0.2 (per batch 256), cosine schedule after a 2%
    warm-up, in the final skeleton of the genome's space (cells: C=36, 20 cells, auxiliary head,
    drop path 0.2; nb201: C=16, 5 cells per stage). A checkpoint follows every epoch: the same
    command again continues."""
    from evo_nas import fulltrain
    from evo_nas.progress import EpochBar

    cfg = fulltrain.config_from_options(target, options)
    bar = EpochBar(cfg.train.batch_size) if sys.stderr.isatty() else None  # plain epoch lines elsewhere
    log = (lambda line: bar.console.print(line, markup=False, highlight=False)) if bar else fulltrain.stderr_line
    try:
        result = fulltrain.run(cfg, log=log, on_steps=bar)
    finally:
        if bar is not None:
            bar.close()
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
@click.option("--quick/--full", default=None,
              help="quick: no random cells, the reference loop for 100 steps, on a CPU a tiny proxy "
                   "(minutes on 2 cores) [default: quick on a CPU, full on a GPU]")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="n of every measurement (median and spread are reported)")
@click.option("--random-cells", type=click.IntRange(min=0), help="seeded random cells besides NASNet-A, DARTS-V2 "
                                                                   "[default: quick 0, full 2]")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="default: the device's proxy")
@click.option("--train-images", type=click.IntRange(min=1), help="image budget per evaluation (default: the "
                                                                   "device's proxy)")
@click.option("--train-limit", type=click.IntRange(min=1), help="training images (default: the proxy's)")
@click.option("--in-flight", help="comma-separated candidates in flight per process [default: 1,2,4 on CUDA, 1,2 "
                                  "on a CPU]")
@click.option("--reference/--no-reference", default=None, help="time the plain reference loop too [default: yes]")
@click.option("--out", type=click.Path(file_okay=False), default="bench-out", show_default=True,
              help="folder of bench.json, rewritten after every measurement")
def bench(**options):
    """Measure the evaluator against a plain training loop, and evaluations per hour with
    candidates in flight (steady state). Ctrl-C keeps what was measured."""
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
    warnings.formatwarning = _one_line_warning
    previous = signal.signal(signal.SIGTERM, _terminated)  # a plain `kill` stops like Ctrl-C
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        with cli.make_context("evonas", args) as ctx:  # not cli.main: it prints a blank line on Ctrl-C
            cli.invoke(ctx)
        return 0
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort as abort:  # click's wrapper around Ctrl-C
        return _stopped(abort.__cause__)
    except click.ClickException as err:
        where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) else "evonas: "
        click.echo(f"{where}{' '.join(err.format_message().split())}", err=True)
        return 2
    except UserError as err:
        click.echo(f"evonas: {err}", err=True)
        return 2
    except KeyboardInterrupt as stop:
        return _stopped(stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum, frame):
    raise Interrupted(signum=signum)


def _stopped(stop) -> int:
    click.echo(f"evonas: stopped; {getattr(stop, 'hint', 'nothing finished was lost')}", err=True)
    return 128 + getattr(stop, "signum", signal.SIGINT)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line each: what and where it is about (the message says), not our source line."""
    return f"evonas: warning: {' '.join(str(message).split())}\n"


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
