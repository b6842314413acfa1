"""Test settings: the repo root on sys.path, where the genome files are."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GENOMES = ROOT / "genomes"

# CPU results are reproducible only at a fixed thread count.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def genomes_dir() -> Path:
    return GENOMES
