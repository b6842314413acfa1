"""evonas: genetic-algorithm neural architecture search."""

__version__ = "0.1.0"


def load(run_dir):
    """A run directory for Python: `load("runs/NAME").history` is a pandas DataFrame with one row
    per evaluation, `.front` the Pareto front's rows, `.front_records` its typed records (see
    evo_nas.report.frames.Run). pandas is imported here, not with the package."""
    from evo_nas.report.frames import load as load_run

    return load_run(run_dir)
