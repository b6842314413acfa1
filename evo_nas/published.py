"""Published ImageNet figures of the mobile setting, each with its source, and evonas's own counts
of the published cells it builds there.   [stdlib]

The mobile setting (NASNet's, kept by AmoebaNet, PNAS and DARTS): 224x224 images, fewer than
600M mult-adds per image. Figures are as printed; papers count mult-adds differently, so the
same network can carry two figures (docs/reference-cells.md says which convention evonas uses).
`checked` says where the numbers were read again for this table; every row was.
"""

from __future__ import annotations

from dataclasses import dataclass

MOBILE_MULT_ADDS = 600e6  # the mobile setting's limit, per 224x224 image

DARTS_TABLE = "Liu et al. 2019, DARTS (ICLR), Table 3 (ImageNet, mobile setting)"
MOBILENETV2_TABLE = "Sandler et al. 2018, MobileNetV2 (CVPR), Table 4"


@dataclass(frozen=True)
class Published:
    name: str
    designed: str  # "search": found by architecture search; "manual": designed by hand
    top1: float  # ImageNet top-1 accuracy (%), one 224x224 crop; 100 minus the printed error
    params: float  # millions, as printed
    mult_adds: float  # millions per image, as printed (the paper's own count)
    source: str  # the paper and table the three numbers are quoted from
    checked: str  # where they were read again for this table
    note: str = ""
    genome: str | None = None  # the genome file (genomes/<genome>.yaml) of the same cell, if any


PUBLISHED: tuple[Published, ...] = (
    Published("Inception-v1", "manual", 69.8, 6.6, 1448, DARTS_TABLE, "DARTS paper text, Table 3",
              note="quoted from Szegedy et al. 2015 (GoogLeNet)"),
    Published("MobileNet-v1", "manual", 70.6, 4.2, 569, DARTS_TABLE, "DARTS paper text, Table 3",
              note="the same network is 575M mult-adds in MobileNetV2's Table 4: another count"),
    Published("MobileNet-v2", "manual", 72.0, 3.4, 300, MOBILENETV2_TABLE, "MobileNetV2 paper text, Table 4"),
    Published("MobileNet-v2 (1.4)", "manual", 74.7, 6.9, 585, MOBILENETV2_TABLE, "MobileNetV2 paper text, Table 4"),
    Published("ShuffleNet 2x (g=3)", "manual", 73.7, 5.4, 524, MOBILENETV2_TABLE,
              "MobileNetV2 paper text, Table 4; DARTS paper text, Table 3",
              note="DARTS' Table 3 gives the same top-1 and mult-adds, and about 5M parameters"),
    Published("NASNet-A", "search", 74.0, 5.3, 564, DARTS_TABLE,
              "DARTS paper text, Table 3; MobileNetV2 paper text, Table 4 (the same figures)",
              note="NASNet's own skeleton (4 cells per stage, 1056 filters), not DARTS'", genome="nasnet_a"),
    Published("AmoebaNet-A", "search", 74.5, 5.1, 555, DARTS_TABLE, "DARTS paper text, Table 3",
              note="AmoebaNet's own skeleton (N=4, F=50), not DARTS'", genome="amoebanet_a"),
    Published("PNASNet-5", "search", 74.2, 5.1, 588, DARTS_TABLE, "DARTS paper text, Table 3 (as 'PNAS')"),
    Published("DARTS (V2)", "search", 73.3, 4.7, 574, DARTS_TABLE, "DARTS paper text, Table 3",
              note="DARTS' own ImageNet network, the one evonas builds; its counter is unpublished "
                   "(quark0/darts issue #46)", genome="darts_v2"),
)

# evonas's counts (`evonas inspect --skeleton imagenet`) of the cells in genomes/, in DARTS'
# ImageNet network (C=48, 14 cells, 224x224, 1000 classes): parameters without the auxiliary
# head, conv + linear MACs. Equal to DARTS' reference code (cnn/model.py NetworkImageNet) for
# all four (tests/test_imagenet.py counts them again).
EVONAS_IMAGENET: dict[str, tuple[int, int]] = {  # genome -> (params, MACs)
    "nasnet_a": (5_564_320, 604_031_616),
    "amoebanet_a": (4_627_360, 526_746_624),
    "darts_v1": (4_510_432, 505_864_704),
    "darts_v2": (4_718_752, 529_911_552),
}


def by_mult_adds() -> list[Published]:
    return sorted(PUBLISHED, key=lambda p: p.mult_adds)
