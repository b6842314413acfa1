"""Augmentation beyond crop and mirror, on the device: random resized crop (scale and aspect-ratio
jitter) and lighting (brightness, contrast). Each option: the batches keep their shape, the
pixels stay in range, a seed gives the same batches and another seed others; the resampling
and the lighting rule against hand-computed oracles; per-data-set defaults and config checks."""

import math

import numpy as np
import pytest
import torch

from evo_nas.config import TrainConfig
from evo_nas.errors import ConfigError
from evo_nas.evaluate.data import Dataset, augment_defaults
from evo_nas.evaluate.device_data import Augment, DeviceData, _boxes, lighting, resized_crop

N, SIZE = 32, 12
OFF = Augment(crop_scale=1.0, crop_ratio=1.0, brightness=0.0, contrast=0.0)
OPTIONS = {"crop_scale": 0.4, "crop_ratio": 1.5, "brightness": 0.4, "contrast": 0.4}


def data(channels: int = 3, **kw) -> DeviceData:
    """Random images of a data set evonas has no defaults for (so nothing beyond what is asked)."""
    x = np.random.default_rng(channels).integers(0, 256, (N, SIZE, SIZE, channels), dtype=np.uint8)
    return DeviceData(Dataset("toy", x, np.arange(N), None, None, N, True, "memory"), **kw)


def epoch(dd: DeviceData, aug: Augment, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(dd.batches(8, torch.Generator().manual_seed(seed), aug))


def pixels(dd: DeviceData, x: torch.Tensor) -> torch.Tensor:
    """Normalised images back to [0, 1] pixels."""
    return x * dd._std + dd._mean


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_option_keeps_shape_and_range_and_is_seeded(option, channels):
    dd = data(channels)
    aug = Augment(**{**vars(OFF), option: OPTIONS[option]})
    first, again, other, plain = epoch(dd, aug, 3), epoch(dd, aug, 3), epoch(dd, aug, 4), epoch(dd, OFF, 3)
    for x, _ in first:
        assert x.shape == (8, channels, SIZE, SIZE) and x.dtype == torch.float32 and torch.isfinite(x).all()
        p = pixels(dd, x)
        assert p.min() >= -1e-5 and p.max() <= 1 + 1e-5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
    # The option's draws come after the crop and mirror draws: same images in the same order,
    # crops and mirrors as without it, and only the option makes the difference.
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, plain))
    assert not torch.allclose(torch.cat([a[0] for a in first]), torch.cat([b[0] for b in plain]))


def test_all_together_in_low_precision_and_channels_last():
    dd = data(dtype=torch.bfloat16, channels_last=True)
    x, _ = epoch(dd, Augment(**OPTIONS), 0)[0]
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    p = pixels(dd, x.float())
    assert p.min() >= -0.02 and p.max() <= 1.02  # bf16 rounding


def ramp(height: int, width: int, a: float, b: float, c: float) -> torch.Tensor:
    """1×1×H×W image whose value at pixel centre (i + ½, j + ½) is a·j + b·i + c: bilinear
    resampling reproduces a linear image exactly, so a crop box has an exact oracle."""
    i, j = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    return (a * j + b * i + c)[None, None]


def test_resized_crop_samples_the_box_exactly():
    h_img, w_img = 16, 20
    image = ramp(h_img, w_img, 0.5, -0.25, 3.0)
    top, left, h, w = 0.25, 0.1, 0.5, 0.6
    out = resized_crop(image, torch.tensor([[top, left, h, w]]))
    i, j = torch.meshgrid(torch.arange(h_img, dtype=torch.float32), torch.arange(w_img, dtype=torch.float32),
                          indexing="ij")
    # output pixel (i, j) samples the input at y = top·H + (i + ½)·h, x = left·W + (j + ½)·w (pixel units)
    y, x = top * h_img + (i + 0.5) * h, left * w_img + (j + 0.5) * w
    expected = 0.5 * (x - 0.5) - 0.25 * (y - 0.5) + 3.0
    assert torch.allclose(out[0, 0], expected, atol=1e-4)
    assert torch.allclose(resized_crop(image, torch.tensor([[0.0, 0.0, 1.0, 1.0]])), image, atol=1e-5)


def test_boxes_have_the_asked_area_and_aspect_and_stay_inside():
    aug = Augment(crop_scale=0.3, crop_ratio=1.25, brightness=0.0, contrast=0.0)
    u = torch.rand(20000, 4, generator=torch.Generator().manual_seed(0))
    top, left, h, w = _boxes(u, aug).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 1 + 1e-6).all() and (left + w <= 1 + 1e-6).all()
    area, ratio = h * w, w / h
    unclipped = (h < 1) & (w < 1)
    assert area[unclipped].min() >= 0.3 - 1e-6 and area.max() <= 1 + 1e-6
    assert ratio[unclipped].min() >= 1 / 1.25 - 1e-5 and ratio[unclipped].max() <= 1.25 + 1e-5
    assert abs(ratio.log().mean().item()) < 0.01  # log-uniform, symmetric about 1
    square = _boxes(u, Augment(crop_scale=0.3, crop_ratio=1.0, brightness=0.0, contrast=0.0))
    area = square[:, 2] * square[:, 3]
    assert torch.allclose(square[:, 2], square[:, 3]) and abs(area.mean().item() - 0.65) < 0.01  # U[0.3, 1]


def test_lighting_is_torchvisions_brightness_then_contrast():
    rng = np.random.default_rng(1)
    raw = rng.uniform(0, 1, (4, 3, 5, 5)).astype(np.float32)
    mean, std = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32)
    factors = np.array([[1.3, 0.7], [0.6, 1.4], [1.0, 1.0], [1.5, 0.0]], np.float32)
    x = (raw - mean[:, None, None]) / std[:, None, None]
    out = lighting(torch.from_numpy(x), torch.from_numpy(factors), torch.from_numpy(mean).view(1, 3, 1, 1),
                   torch.from_numpy(std).view(1, 3, 1, 1))
    for k, (b, c) in enumerate(factors):
        bright = np.clip(raw[k] * b, 0, 1)
        m = bright.mean()
        expected = (np.clip((bright - m) * c + m, 0, 1) - mean[:, None, None]) / std[:, None, None]
        assert np.allclose(out[k].numpy(), expected, atol=1e-5)
    assert np.allclose(out[2].numpy(), x[2], atol=1e-5)  # factors 1: unchanged


def test_defaults_per_data_set_and_what_a_config_asks():
    for name in ("fashion-mnist", "mnist", "cifar10", "cifar100", "npz:/some/file.npz"):
        defaults = augment_defaults(name)
        assert set(defaults) == set(OPTIONS)
        assert 0 < defaults["crop_scale"] <= 1 and defaults["crop_ratio"] >= 1
        assert 0 <= defaults["brightness"] < 1 and 0 <= defaults["contrast"] < 1
    assert augment_defaults("npz:/some/file.npz") == vars(OFF)
    assert Augment().resolved("cifar10") == Augment(**augment_defaults("cifar10"))
    assert Augment(brightness=0.2).resolved("cifar10").brightness == 0.2  # a setting beats the default
    assert Augment.of(TrainConfig(augment=False)) is None
    assert Augment.of(TrainConfig(crop_scale=0.5, contrast=0.1)) == Augment(crop_scale=0.5, contrast=0.1)


@pytest.mark.parametrize("bad", [{"crop_scale": 0.0}, {"crop_scale": 1.5}, {"crop_ratio": 0.9},
                                 {"brightness": 1.0}, {"contrast": -0.1}])
def test_bad_settings_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_a_wide_ratio_at_a_small_scale_still_gives_boxes_inside_the_image():
    aug = Augment(crop_scale=0.05, crop_ratio=8.0, brightness=0.0, contrast=0.0)
    boxes = _boxes(torch.rand(5000, 4, generator=torch.Generator().manual_seed(1)), aug)
    assert (boxes[:, 2:] <= 1).all() and (boxes[:, 2:] > 0).all() and (boxes[:, :2] >= 0).all()
    assert math.isclose(boxes[:, 2:].max().item(), 1.0)  # the clipped ones span the image
