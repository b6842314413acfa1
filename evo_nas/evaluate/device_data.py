"""A data set resident on one device, with augmentation and batching done there (docs/data.md).   [torch]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from evo_nas.errors import DataError
from evo_nas.evaluate.data import Dataset, augment_defaults, cached_dataset, part_indices


@dataclass(frozen=True)
class Augment:
    """Augmentation beyond the random crop and mirror, done on the device. A field left None
    takes the data set's default (evo_nas.evaluate.data.augment_defaults)."""

    crop_scale: float | None = None  # random resized crop: least share of the image's area kept (1: off)
    crop_ratio: float | None = None  # its largest aspect-ratio stretch r, drawn log-uniform in [1/r, r] (1: off)
    brightness: float | None = None  # pixels times a factor in [1-b, 1+b] (0: off)
    contrast: float | None = None  # distance from the image's mean times a factor in [1-c, 1+c] (0: off)

    @classmethod
    def of(cls, cfg) -> Augment | None:
        """A TrainConfig's augmentation; None when `augment` is off."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)}) if cfg.augment else None

    def resolved(self, dataset_name: str) -> Augment:
        defaults = augment_defaults(dataset_name)
        return replace(self, **{f.name: defaults[f.name] for f in fields(self) if getattr(self, f.name) is None})

    @property
    def resizes(self) -> bool:
        return self.crop_scale < 1 or self.crop_ratio > 1

    @property
    def lights(self) -> bool:
        return self.brightness > 0 or self.contrast > 0


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
        self.dataset_name = dataset.name
        self._x = _normalised(x, dataset, self.pad, self.device, dtype)  # N×(H+2p)×(W+2p)×C
        self._mean = torch.tensor(dataset.mean, device=self.device).view(1, -1, 1, 1)  # 1×C×1×1
        self._std = torch.tensor(dataset.std, device=self.device).view(1, -1, 1, 1)
        self.labels = torch.from_numpy(np.require(y, requirements=("C", "W"))).to(self.device)
        self._rows = torch.arange(self.height, device=self.device)
        self._cols = torch.arange(self.width, device=self.device)
        self._loaded = _event_on_current_stream(self.device)  # see _wait_loaded

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

    def batches(self, batch_size: int, generator: torch.Generator, augment: bool | Augment | None,
                drop_last: bool = True, max_batches: int | None = None,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch of (x B×C×H×W, y B). `augment`: False or None, none; True, the
        data set's default augmentation; an Augment, that. With drop_last every batch has the
        same shape (a split smaller than one batch gives one batch of all of it). max_batches
        stops early, for fractional epochs."""
        aug = None if not augment else (Augment() if augment is True else augment).resolved(self.dataset_name)
        self._wait_loaded()
        draws = self._draw_epoch(generator, aug)
        size = min(batch_size, len(self))
        count = self.num_batches(batch_size, drop_last)
        if max_batches is not None:
            count = min(count, max_batches)
        for start in range(0, count * size, size):
            rows = slice(start, start + size)
            yield self._augmented(aug, *(d[rows] if d is not None else None for d in draws)), \
                self.labels[draws[0][rows]]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every sample once, in stored order, unaugmented; the last batch may be smaller."""
        self._wait_loaded()
        for start in range(0, len(self), batch_size):
            x = self.images[start:start + batch_size]
            yield x.contiguous(memory_format=self.memory_format), \
                self.labels[start:start + batch_size]

    def _wait_loaded(self) -> None:
        """Order the current stream after the loading: the data were made on whichever stream
        was current then (one slot's, in flight), and the other slots' streams read them too."""
        if self._loaded is not None:
            torch.cuda.current_stream(self.device).wait_event(self._loaded)

    def _draw_epoch(self, generator: torch.Generator, aug: Augment | None):
        """Everything random of one epoch, drawn at its start from `generator` in a fixed order
        (so a CPU generator gives the same batches on any device): order, crop offsets dy, dx and
        mirror flags (N,), then when asked the resized crops' boxes (N×4) and the lighting
        factors (N×2). Values drawn on the host reach the device from pinned memory, one copy
        per kind, without stalling the host."""
        n, p, on = len(self), self.pad, generator.device
        order = torch.randperm(n, generator=generator, device=on)
        if aug is not None and p > 0:
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=on)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=on)
        else:
            dy = dx = torch.full((n,), p, dtype=torch.long, device=on)  # the centre crop
        if aug is not None and self.flip:
            mirror = (torch.rand(n, generator=generator, device=on) < 0.5).long()
        else:
            mirror = torch.zeros(n, dtype=torch.long, device=on)
        boxes = factors = None
        if aug is not None and aug.resizes:
            boxes = self._to_device(_boxes(torch.rand(n, 4, generator=generator, device=on), aug))
        if aug is not None and aug.lights:
            factors = self._to_device(_factors(torch.rand(n, 2, generator=generator, device=on), aug))
        ints = self._to_device(torch.stack((order, dy, dx, mirror), dim=1))  # N×4
        return ints[:, 0], ints[:, 1], ints[:, 2], ints[:, 3].bool(), boxes, factors

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device:
            return t
        if self.device.type == "cuda" and t.device.type == "cpu":
            t = t.pin_memory()  # a pageable source would make the copy synchronous
        return t.to(self.device, non_blocking=True)

    def _augmented(self, aug: Augment | None, samples, dy, dx, mirror, boxes, factors) -> torch.Tensor:
        x = self._gather(samples, dy, dx, mirror)
        if boxes is not None:
            x = resized_crop(x, boxes)
        if factors is not None:
            x = lighting(x, factors, self._mean, self._std)
        return x.contiguous(memory_format=self.memory_format)

    def _gather(self, samples, dy, dx, mirror) -> torch.Tensor:
        """Crop and mirror the given samples in one gather; each argument is (B,)."""
        rows = dy[:, None] + self._rows                                  # B×H
        cols = dx[:, None] + torch.where(mirror[:, None], self._cols.flip(0), self._cols)  # B×W
        out = self._x[samples[:, None, None], rows[:, :, None], cols[:, None, :]]  # B×H×W×C
        return out.permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format)


def _boxes(u: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Uniform draws N×4 -> crop boxes N×(top, left, height, width) as fractions of the image:
    area share in [crop_scale, 1], log aspect ratio uniform in ±log(crop_ratio), the box placed
    uniformly. Height and width are clipped to the whole image (the extreme boxes of a wide
    ratio range at a small scale become a full-height or full-width strip)."""
    area = aug.crop_scale + (1 - aug.crop_scale) * u[:, 0]
    ratio = torch.exp(math.log(aug.crop_ratio) * (2 * u[:, 1] - 1))  # width / height
    h, w = (area / ratio).sqrt().clamp(max=1), (area * ratio).sqrt().clamp(max=1)
    return torch.stack(((1 - h) * u[:, 2], (1 - w) * u[:, 3], h, w), dim=1)


def _factors(u: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Uniform draws N×2 -> (brightness, contrast) factors in [1-b, 1+b] and [1-c, 1+c]."""
    return torch.stack((1 + aug.brightness * (2 * u[:, 0] - 1), 1 + aug.contrast * (2 * u[:, 1] - 1)), dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box (B×(top, left, height, width), fractions) resampled to the full size,
    bilinear, in one grid_sample (in float32; the result in x's dtype)."""
    top, left, h, w = boxes.to(torch.float32).unbind(1)
    zero = torch.zeros_like(h)
    theta = torch.stack((torch.stack((w, zero, 2 * left + w - 1), 1),   # B×2×3: output [-1, 1] -> the box
                         torch.stack((zero, h, 2 * top + h - 1), 1)), 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(x.dtype)


def lighting(x: torch.Tensor, factors: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Brightness then contrast (torchvision's ColorJitter order and rule) on normalised images:
    pixels p in [0, 1] become clamp(p·b), then clamp((p - m)·c + m), m the image's mean; back to
    normalised, in x's dtype. factors: B×(b, c); mean, std: 1×C×1×1."""
    b, c = (f.to(torch.float32).view(-1, 1, 1, 1) for f in factors.unbind(1))
    pixels = (x.float() * std + mean).mul(b).clamp(0, 1)
    m = pixels.mean(dim=(1, 2, 3), keepdim=True)
    pixels = ((pixels - m) * c + m).clamp(0, 1)
    return ((pixels - mean) / std).to(x.dtype)


_RESIDENT: dict = {}  # per process: (data settings, seed, device, classes) -> {part: DeviceData}


def load_data(data, seed: int, device: torch.device | str, part: str, classes: int | None = None,
              precision: str = "bf16") -> DeviceData:
    """A part ("train", "val", "trainval" or "test": data.part_indices) of the data set a
    config.DataConfig names, on `device`: read once per process and kept there, one data set
    at a time. `classes`: the class count the user named for an npz data set (the skeleton's).
    The test part is float32 and unmirrored (the final accuracy is the float32 model's); the
    others are in the dtype training at `precision` wants (data_dtype)."""
    key = (data, seed, str(device), classes)
    if key not in _RESIDENT:
        _RESIDENT.clear()
        _RESIDENT[key] = {}
    dtype = torch.float32 if part == "test" else data_dtype(precision, device)
    parts = _RESIDENT[key]
    if (part, dtype) not in parts:
        dataset = cached_dataset(data.dataset, data.data_dir, classes)
        indices = part_indices(dataset, data, seed, part)
        parts[(part, dtype)] = on_device(dataset, indices, device, "test" if part == "test" else "train", dtype,
                                         flip=part != "test")
    return parts[(part, dtype)]


def on_device(dataset: Dataset, indices: np.ndarray | None, device: torch.device | str, part: str = "train",
              dtype: torch.dtype | None = None, flip: bool = True) -> DeviceData:
    """DeviceData as every trainer wants it: on CUDA channels_last and (by default) bf16, on the
    CPU float32 and contiguous."""
    cuda = torch.device(device).type == "cuda"
    dtype = dtype or data_dtype("bf16", device)
    return DeviceData(dataset, indices, device, dtype, part=part, flip=flip, channels_last=cuda)


def data_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """The images' dtype for training at `precision` ("bf16" or "fp32") on `device`: bf16 only
    under bf16 autocast on CUDA (half the memory and reads); an fp32 model needs fp32 inputs."""
    cuda = torch.device(device).type == "cuda"
    return torch.bfloat16 if cuda and precision == "bf16" else torch.float32


def _event_on_current_stream(device: torch.device):
    """A CUDA event after the work queued so far on the current stream; None off CUDA."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


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
    travel (4× less than floats) and are padded with black before normalising. A read-only
    array (the cached test split) is copied: torch warns on tensors over memory it may not write."""
    pixels = torch.from_numpy(np.require(x, requirements=("C", "W"))).to(device)
    pixels = F.pad(pixels, (0, 0, pad, pad, pad, pad))
    mean = torch.tensor(dataset.mean, device=device)
    std = torch.tensor(dataset.std, device=device)
    return pixels.float().div_(255).sub_(mean).div_(std).to(dtype)
