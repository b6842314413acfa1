"""A data set resident on one device, with augmentation and batching done there (docs/data.md).   [torch]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from evo_nas.errors import DataError
from evo_nas.evaluate.data import Dataset


def default_pad(height: int) -> int:
    """Crop padding: 2 pixels for 28×28 images, 4 for 32×32 and larger."""
    return 2 if height <= 28 else 4


class DeviceData:
    """Images (normalised, N×C×H×W) and int64 labels of part of a Dataset on a device."""

    def __init__(self, dataset: Dataset, indices: np.ndarray | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                 part: str = "train", pad: int | None = None, flip: bool = True,
                 channels_last: bool = False) -> None:
        x, y = _part(dataset, part)
        if indices is not None:
            x, y = x[indices], y[indices]
        if len(x) == 0:
            raise ValueError("DeviceData needs at least one sample")
        self.device = torch.device(device)
        self.height, self.width = x.shape[1:3]
        self.pad = default_pad(self.height) if pad is None else pad
        self.flip = flip and dataset.flip          # mirror only where it keeps the label
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._x = _normalised(x, dataset, self.pad, self.device, dtype)  # N×(H+2p)×(W+2p)×C
        self.labels = torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
        self._rows = torch.arange(self.height, device=self.device)
        self._cols = torch.arange(self.width, device=self.device)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def images(self) -> torch.Tensor:
        """All stored images without the padding, N×C×H×W (a view)."""
        p = self.pad
        return self._x[:, p:p + self.height, p:p + self.width].permute(0, 3, 1, 2)

    def num_batches(self, batch_size: int, drop_last: bool = True) -> int:
        """How many batches one epoch of batches() yields."""
        size = min(batch_size, len(self))
        return len(self) // size if drop_last else -(-len(self) // size)

    def batches(self, batch_size: int, generator: torch.Generator, augment: bool,
                drop_last: bool = True, max_batches: int | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch of (x B×C×H×W, y B). With drop_last every batch has the
        same shape (a split smaller than one batch gives one batch of all of it).
        max_batches stops early, for fractional epochs."""
        order, dy, dx, mirror = self._draw_epoch(generator, augment)
        size = min(batch_size, len(self))
        count = self.num_batches(batch_size, drop_last)
        if max_batches is not None:
            count = min(count, max_batches)
        for start in range(0, count * size, size):
            rows = slice(start, start + size)
            yield self._gather(order[rows], dy[rows], dx[rows], mirror[rows]), \
                self.labels[order[rows]]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every sample once, in stored order, unaugmented; the last batch may be smaller."""
        for start in range(0, len(self), batch_size):
            x = self.images[start:start + batch_size]
            yield x.contiguous(memory_format=self.memory_format), \
                self.labels[start:start + batch_size]

    def _draw_epoch(self, generator: torch.Generator, augment: bool):
        """Order, crop offsets and mirror flags for every sample of one epoch, each (N,)."""
        n, p, on = len(self), self.pad, generator.device
        order = torch.randperm(n, generator=generator, device=on)
        if augment and p > 0:
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=on)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=on)
        else:
            dy = dx = torch.full((n,), p, dtype=torch.long, device=on)  # the centre crop
        if augment and self.flip:
            mirror = torch.rand(n, generator=generator, device=on) < 0.5
        else:
            mirror = torch.zeros(n, dtype=torch.bool, device=on)
        return tuple(t.to(self.device, non_blocking=True) for t in (order, dy, dx, mirror))

    def _gather(self, samples, dy, dx, mirror) -> torch.Tensor:
        """Crop and mirror the given samples in one gather; each argument is (B,)."""
        rows = dy[:, None] + self._rows                                  # B×H
        cols = dx[:, None] + torch.where(mirror[:, None], self._cols.flip(0), self._cols)  # B×W
        out = self._x[samples[:, None, None], rows[:, :, None], cols[:, None, :]]  # B×H×W×C
        return out.permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format)


def on_device(dataset: Dataset, indices: np.ndarray | None, device: torch.device | str, part: str = "train",
              dtype: torch.dtype | None = None, flip: bool = True) -> DeviceData:
    """DeviceData as every trainer wants it: on CUDA bf16 (default) and channels_last, on the
    CPU float32 and contiguous."""
    cuda = torch.device(device).type == "cuda"
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    return DeviceData(dataset, indices, device, dtype, part=part, flip=flip, channels_last=cuda)


def _part(dataset: Dataset, part: str) -> tuple[np.ndarray, np.ndarray]:
    if part == "train":
        return dataset.x_train, dataset.y_train
    if part != "test":
        raise ValueError(f"part must be 'train' or 'test', not {part!r}")
    if dataset.x_test is None:
        raise DataError(f"{dataset.name} from {dataset.source} has no test split; add arrays "
                        "x_test and y_test to it")
    return dataset.x_test, dataset.y_test


def _normalised(x: np.ndarray, dataset: Dataset, pad: int, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """uint8 N×H×W×C -> normalised dtype N×(H+2p)×(W+2p)×C on device. The uint8 pixels
    travel (4× less than floats) and are padded with black before normalising."""
    pixels = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    pixels = F.pad(pixels, (0, 0, pad, pad, pad, pad))
    mean = torch.tensor(dataset.mean, device=device)
    std = torch.tensor(dataset.std, device=device)
    return pixels.float().div_(255).sub_(mean).div_(std).to(dtype)
