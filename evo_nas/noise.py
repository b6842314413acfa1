"""How noisy a proxy's accuracy is, where evonas knows it.   [no torch]

A measurement (`evonas fidelity`, docs/fidelity.md) applies to a run whose proxy is the same:
every setting of the space, data, skeleton and training groups, and the device. evonas knows
the measurements it ships (evo_nas/data/fidelity/, copied there by tools/ship_fidelity.py; the table
is in BENCHMARKS.md) and any `evonas fidelity` result in the run's runs folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from evo_nas import config as configs
from evo_nas.errors import UserError
from evo_nas.reading import read_json, read_yaml

SHIPPED = Path(__file__).parent / "data" / "fidelity"
PROXY_GROUPS = {"space", "space.options", "data", "skeleton", "train"}
NOT_PROXY = {"data_dir", "test_limit"}  # where the data lie, and the test split, do not change what it is
Z95 = 1.96


@dataclass(frozen=True)
class Noise:
    tau: float  # seed vs seed Kendall tau of the proxy's accuracies
    tau_low: float  # its bootstrap 95% interval
    tau_high: float
    genomes: int
    sd: float  # within-genome standard deviation of one evaluation's accuracy
    source: str  # where the measurement is

    def threshold(self, repeats: int = 1) -> float:
        """The smallest accuracy difference between two candidates, each the mean of `repeats`
        trainings, that is not noise at 95%."""
        return Z95 * math.sqrt(2.0 / repeats) * self.sd

    def sentence(self, repeats: int = 1) -> str:
        return (f"accuracy differences below {100 * self.threshold(repeats):.1f} points are noise at this proxy "
                f"(seed vs seed tau {self.tau:+.2f} [{self.tau_low:+.2f}, {self.tau_high:+.2f}], "
                f"n={self.genomes} genomes; {self.source})")


UNKNOWN = "the noise of this proxy is not measured: `evonas fidelity` with the same options measures it"


def proxy_part(flat: dict) -> dict:
    """The settings a trained candidate's accuracy depends on, seeds and search aside."""
    leaves = configs.leaves()
    return {k: v for k, v in flat.items()
            if (k in leaves and leaves[k][0] in PROXY_GROUPS and k not in NOT_PROXY) or k == "device"}


def known(flat: dict, runs_dir: str | Path | None = None) -> Noise | None:
    """The measurement that applies to a run with these (flat) settings, if any: the runs
    folder's own first (newest last written wins), then the shipped ones."""
    mine = proxy_part(flat)
    local = sorted(Path(runs_dir).glob("*/fidelity.json"), key=lambda p: p.stat().st_mtime, reverse=True) \
        if runs_dir is not None and Path(runs_dir).is_dir() else []
    for path in local:
        try:
            config = read_yaml(path.parent / "config.yaml", UserError)
            if proxy_part(configs.flat_config(config)) == mine:
                return _noise(read_json(path, UserError), str(path))
        except (UserError, KeyError, TypeError, AttributeError):
            continue  # a damaged or foreign file is no measurement
    for path in sorted(SHIPPED.glob("*.json")):
        table = json.loads(path.read_text())
        if proxy_part(configs.flat_config(table["config"])) == mine:
            return _noise(table["fidelity"], f"measured by evonas, {table['measured']}")
    return None


def statement(flat: dict, runs_dir: str | Path | None, repeats: int = 1) -> str:
    """The sentence a run prints and its report states: the measured noise, or that there is none."""
    found = known(flat, runs_dir)
    return found.sentence(repeats) if found else UNKNOWN


def _noise(summary: dict, source: str) -> Noise:
    proxy = summary["proxy"]
    r = proxy["repeatability"]
    return Noise(r["tau"], r["tau_low"], r["tau_high"], r["n"], math.sqrt(proxy["variance"]["within_genome"]), source)
