"""evonas: genetic-algorithm neural architecture search."""

__version__ = "0.1.0"
