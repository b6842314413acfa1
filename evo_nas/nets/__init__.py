"""The networks genomes describe, one module per search space; what every network offers.   [torch]

Each space's module has `build(genome, skeleton, dropout) -> Network` (DARTS' `model.py`), and
`evo_nas.build.build` finds it through the space's registry entry. Every network's forward has
no host syncs or data-dependent branches (CUDA-graph capturable), and every stride-2 step maps
H to ceil(H/2), so any input of at least 8x8 works.
"""

from __future__ import annotations

from torch import nn

from evo_nas.ops import DropPath


class Network(nn.Module):
    """What every built model offers a trainer: an optional auxiliary head (None unless built;
    `count_params` leaves it out), and drop path: `drop_path_max` is the probability it was
    built with (0: none), `drop_path_prob` the current one, which a trainer anneals."""

    def __init__(self):
        super().__init__()
        self.auxiliary_head: nn.Module | None = None
        self.drop_path_max = 0.0
        self._drop_path_prob = 0.0

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        drops = [m for m in self.modules() if isinstance(m, DropPath)]
        if p > 0 and not drops:
            raise ValueError("drop_path_prob: this model was built without drop path "
                             "(build it with Skeleton(drop_path > 0), cell genomes only)")
        for m in drops:
            m.set_p(p)
        self._drop_path_prob = float(p)


def halve(size: tuple[int, int]) -> tuple[int, int]:
    return (-(-size[0] // 2), -(-size[1] // 2))


def head(channels: int, classes: int, dropout: float) -> nn.Sequential:
    """(N, channels) features -> (N, classes) logits."""
    return nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(), nn.Linear(channels, classes))
