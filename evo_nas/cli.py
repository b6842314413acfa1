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
from evo_nas.config import FidelityConfig
from evo_nas.errors import ConfigError, Interrupted, UserError
from evo_nas.files import FULL, disk_full

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
        return click.Choice([str(c) for c in f.metadata["choices"] if c is not None])
    for prefix, t in (("int", click.INT), ("float", click.FLOAT)):
        if kind.startswith(prefix):
            return _OrNone(t) if "None" in kind else t
    return click.STRING


def _show(v) -> str:
    return "none" if v is None else ",".join(map(str, v)) if isinstance(v, tuple) else str(v).lower() \
        if isinstance(v, bool) else str(v)


def _default_text(name: str, f: dataclasses.Field) -> str:
    """The default a setting gets, and which preset it comes from."""
    show = _show
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
    """One click option per named setting of a run's config, help and default from the field
    (or from `defaults`: name -> the text to show, for a command whose defaults are its own)."""
    return _options([configs.leaves()[name][1] for name in names], defaults, _default_text)


def group_options(cls, defaults: dict | None = None):
    """One click option per field of a command's own settings group (a dataclass of `setting`s)."""
    shown = {f.name: _default_text(f.name, f) if f.name in configs.leaves() else _show(f.default) for f in
             dataclasses.fields(cls)}
    return _options([f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)], {**shown, **(defaults or {})})


GENERATED = "evonas_generated"  # marks the options made from config fields (tests/test_cli.py checks the others)


def _options(settings: list, defaults: dict | None, default_text=None):
    def decorate(func):
        for f in reversed(settings):
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            shown = (defaults or {}).get(f.name) or (default_text(f.name, f) if default_text else "none")
            help_text = f"{f.metadata.get('help', '')} [default: {shown}]"
            if str(f.type).startswith("bool"):
                option = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)
            else:
                option = click.option(flag, f.name, type=_click_type(f), default=None, help=help_text)
            func = option(func)
            setattr(func.__click_params__[-1], GENERATED, True)
        return func
    return decorate


RUN_OPTIONS = [name for name, (_, f) in configs.leaves().items() if f.metadata.get("cli", True)]


def _load_config_file(ctx: click.Context, _param, value: str | None):
    """--config: a YAML mapping of settings (flat names or config.yaml's sections), checked,
    then click's default_map."""
    if value is None:
        return None
    from evo_nas.reading import read_yaml

    data = read_yaml(value, ConfigError, "config file")
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


# What a resume may change: the settings that do not change what is trained or what it returns.
RESUME_OPTIONS = [name for name in RUN_OPTIONS if name in configs.RESUMABLE - {"name", "runs_dir"}]


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@config_options(RESUME_OPTIONS, dict.fromkeys(RESUME_OPTIONS, "the run's"))
def resume(run_dir, **overrides):
    """Continue a stopped or killed run (or fidelity measurement, or study) exactly where it was;
    extend it (generations, budget) or move it (backend, workers, data folder) on the way."""
    from evo_nas import fidelity, protocol, runner
    from evo_nas.progress import Progress
    from evo_nas.store import RunDir

    changes = {k: v for k, v in overrides.items() if v is not None}
    if protocol.is_study(RunDir.open(run_dir)):
        from evo_nas.progress import StudyProgress

        _study_done(protocol.resume(run_dir, StudyProgress()))
        return
    if fidelity.is_fidelity_run(RunDir.open(run_dir)):
        _fidelity_done(fidelity.resume(RunDir.open(run_dir), log=lambda line: click.echo(line, err=True)))
        return
    _finished(runner.resume(run_dir, changes, Progress()))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@config_options(["name", "generations", "budget", "seed"], {"name": "RUN_DIR's name + '-refined'",
                                                          "generations": "RUN_DIR's", "budget": "RUN_DIR's",
                                                          "seed": "RUN_DIR's"})
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
@group_options(FidelityConfig)
@config_options(RUN_OPTIONS, {"repeats": "2 (seeds per genome and fidelity)"})
def fidelity_command(**options):
    """Measure whether the proxy (the settings of `evonas run`) ranks architectures: each genome
    trained with several seeds at the proxy and at a reference fidelity; repeatability (seed vs
    seed), validity (proxy vs reference) against the reference's own repeatability, params, MACs
    and the NASWOT score as free predictors, bootstrap 95% intervals, cost. Writes fidelity.csv,
    .json and .html into runs/<name>/; `evonas resume` continues it."""
    from evo_nas import fidelity

    given = {k: v for k, v in options.items() if v is not None}
    fid = configs.group_from(FidelityConfig, _pop(given, FidelityConfig), "fidelity")
    _fidelity_done(fidelity.start(given, fid, log=lambda line: click.echo(line, err=True)))


def _pop(given: dict, cls) -> dict:
    """The values of `cls`'s fields, taken out of `given`."""
    return {f.name: given.pop(f.name) for f in dataclasses.fields(cls) if f.name in given}


def _fidelity_done(run) -> None:
    from evo_nas import fidelity

    summary = json.loads((run.path / "fidelity.json").read_text())
    written = ", ".join(name for name in ("fidelity.csv", "fidelity.json", "fidelity.html")
                        if (run.path / name).is_file())
    click.echo("\n".join([*fidelity.lines(summary), f"written: {run.path}/ {written}"]))


NAMED_SKELETONS = configs.NAMED_SKELETONS


@cli.command()
@click.argument("genome_file", type=click.Path(dir_okay=False))
@click.option("--skeleton", "skeleton", type=click.Choice(NAMED_SKELETONS),
              help="a named skeleton of the genome's space (cells: imagenet, DARTS' ImageNet network: two "
                   "stride-2 stems, C=48, 14 cells, 224x224, 1000 classes) [default: the one its published "
                   "figures are quoted in]")
@config_options(["input_shape", "classes", "init_channels", "depth"],
                {"input_shape": "3x32x32, or the named skeleton's", "classes": "10, or the named skeleton's",
                 "init_channels": "the space's published skeleton (cells 36)",
                 "depth": "the space's published skeleton (cells 20; nb201 5 per stage)"})
@click.option("--compare", is_flag=True, help="also its counts in the ImageNet mobile setting, among the published "
                                              "architectures' (cell genomes)")
@click.option("--figure", type=click.Path(dir_okay=False),
              help="write the comparison's two figures (top-1 against mult-adds and against parameters) to this "
                   "HTML file (implies --compare)")
@config_options(["cpu_threads"], {"cpu_threads": "this machine's cores"})
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of text")
def inspect(genome_file, skeleton, input_shape, classes, init_channels, depth, compare, figure, cpu_threads,
            as_json):
    """Describe a genome file's network: structure, output shape, params, MACs."""
    from evo_nas import inspection

    init_channels, depth, cpu_threads = (None if v == "none" else v for v in (init_channels, depth, cpu_threads))
    configs.BackendConfig(cpu_threads=cpu_threads)  # checked as a run's setting is: at least 1
    summary = inspection.inspect_file(genome_file, _shape(input_shape) if input_shape else None, classes,
                                      init_channels, depth, skeleton, compare or figure is not None, cpu_threads)
    written = inspection.write_figure(summary, figure) if figure is not None else None
    click.echo(json.dumps(summary, indent=2) if as_json else inspection.render(summary))
    if written is not None and not as_json:
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
    from evo_nas import protocol
    from evo_nas import report as reports
    from evo_nas.store import RunDir

    if protocol.is_study(RunDir.open(run_dir)):
        return _study_done(RunDir.open(run_dir))
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


STUDY_OPTIONS = [name for name in RUN_OPTIONS if name not in ("seed", "algorithm", "generations", "seed_genomes")] \
    + ["test_limit"]  # a study sets the others for each search


@cli.command()
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config_file, is_eager=True,
              expose_value=False, help="YAML file of the searches' run settings (flags override it)")
@group_options(configs.StudySettings)
@config_options(STUDY_OPTIONS, {"budget": "table 150; training: the preset's (cpu, gpu: 32)",
                                "name": "study-SPACE-DATASET-PRESET (table: study)"})
def study(**options):
    """Does the search find better networks? Every algorithm and random search, several seeds at
    one budget; what each search returns is trained again by one final protocol, beside the
    published cells and a hand-designed network, and tested once (docs/study.md). Writes
    study.csv, .json and .html; the same command again (or `evonas resume DIR`) continues it.
    With --table DATASET every evaluation is a NAS-Bench-201 lookup instead (nb201, seconds)."""
    given = {k: v for k, v in options.items() if v is not None}
    settings = configs.group_from(configs.StudySettings, _pop(given, configs.StudySettings), "study")
    if settings.table:
        return _table_study(settings, given)
    from evo_nas import protocol
    from evo_nas.progress import StudyProgress

    done = protocol.start(given, settings, StudyProgress())
    _study_done(done)


def _study_done(run) -> None:
    from evo_nas import protocol, study_stats

    summary = protocol.outputs(run)
    written = ", ".join(name for name in ("study.csv", "study.json", "study.html") if (run.path / name).is_file())
    click.echo("\n".join([*study_stats.lines(summary), f"written: {run.path}/ {written}"]))


TABLE_OPTIONS = {"space", "budget", "operators", "tie_width", "runs_dir", "name"}


def _table_study(settings, given: dict) -> None:
    from evo_nas import study as studies

    other = sorted(set(given) - TABLE_OPTIONS)
    if other or given.get("space", "nb201") != "nb201":
        raise ConfigError(f"study --table: {other[0] if other else 'space'}: applies to a study on real training, "
                          f"not to NAS-Bench-201 lookups")
    out = Path(given.get("runs_dir", "runs")) / given.get("name", "study")
    cfg = studies.StudyConfig(dataset=settings.table, algorithms=settings.arms if settings.algorithms else
                              studies.StudyConfig.algorithms, seeds=settings.seeds or 100,
                              budget=given.get("budget", 150), out=out, first_seed=settings.first_seed,
                              operators=given.get("operators", configs.SearchConfig.operators),
                              noise=given.get("tie_width", 0.0))
    for line in studies.summary_lines(studies.run_study(cfg)):
        click.echo(line)


TRAIN_OPTIONS = ["dataset", "data_dir", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule",
                 "warmup", "grad_clip", "label_smoothing", "cuda_graph", "aux_weight", "init_channels", "depth",
                 "auxiliary", "drop_path", "train_limit", "test_limit", "device", "cpu_threads", "seed"]


def _train_defaults() -> dict:
    """What `evonas train` uses where no option is given: its recipe and each space's final skeleton."""
    recipe = configs.FULL_TRAINING
    shown = {f.name: str(getattr(recipe, f.name)).lower() for f in dataclasses.fields(recipe)}
    for name in ("init_channels", "depth", "auxiliary", "drop_path"):
        values = [f"{e.name} {str(e.final[name]).lower()}" for e in spaces.REGISTRY.values() if name in e.final]
        shown[name] = "; ".join(values) + " (the space's final skeleton)" if values else "none"
    shown.update(dataset="the run's, else fashion-mnist", train_limit="the whole training split",
                 test_limit="the whole test split", cpu_threads="this machine's cores", device="auto", seed="0")
    return shown


@cli.command("train")
@click.argument("target")
@config_options(TRAIN_OPTIONS, _train_defaults())
@group_options(configs.TrainCommand)
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
@config_options(["device", "dataset", "data_dir", "epochs", "train_images", "train_limit", "seed"],
                {"device": "auto", "dataset": "fashion-mnist", "epochs": "the device's proxy",
                 "train_images": "the device's proxy", "train_limit": "the device's proxy", "seed": "0"})
@group_options(configs.BenchCommand)
def bench(**options):
    """Measure the evaluator against a plain training loop, and evaluations per hour with
    candidates in flight (steady state). Ctrl-C keeps what was measured."""
    from evo_nas import bench as benches

    result = benches.run_bench(benches.bench_config(**options), log=lambda line: click.echo(line, err=True))
    click.echo(benches.table(result))
    click.echo(f"written: {', '.join(result.files)}")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(x) for x in text.lower().replace(",", "x").split("x"))
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
    except OSError as err:  # a full disk in a write not made through evo_nas.files (a folder made, ...)
        if err.errno not in FULL:
            raise
        click.echo(f"evonas: {disk_full(err.filename or '.')}", err=True)
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
