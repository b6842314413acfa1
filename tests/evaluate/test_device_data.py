"""DeviceData on the CPU: normalisation, static batches, seeded and real augmentation."""

import itertools
import warnings

import numpy as np
import pytest
import torch

from evo_nas.errors import DataError
from evo_nas.evaluate.data import Dataset
from evo_nas.evaluate.device_data import DeviceData

N = 40


def toy(channels=3, flip=True, size=8, test=False) -> Dataset:
    """Random images; label i for image i, so a batch says which images it holds."""
    rng = np.random.default_rng(channels)
    x = rng.integers(0, 256, (N, size, size, channels), dtype=np.uint8)
    xt, yt = (x[:5], np.arange(5)) if test else (None, None)
    return Dataset("toy", x, np.arange(N), xt, yt, N, flip, "memory")


def test_read_only_arrays_load_without_a_warning():
    """The data cache hands out read-only arrays (the test split of a final training, run after
    run); torch warned once per process on tensors over them."""
    ds = toy(test=True)
    for array in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        array.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for part in ("train", "test"):
            data = DeviceData(ds, part=part)
            assert len(data.labels) == (N if part == "train" else 5)


def normalised(ds: Dataset, pad: int) -> np.ndarray:
    """The oracle: (x/255 - mean)/std, padded with black (normalised 0), N×Hp×Wp×C."""
    mean, std = np.array(ds.mean), np.array(ds.std)
    x = (ds.x_train / 255.0 - mean) / std
    black = -mean / std
    out = np.broadcast_to(black, (N, x.shape[1] + 2 * pad, x.shape[2] + 2 * pad, x.shape[3]))
    out = out.copy()
    out[:, pad:pad + x.shape[1], pad:pad + x.shape[2]] = x
    return out


def transforms(padded: np.ndarray, image: np.ndarray, pad: int) -> set[tuple]:
    """Every (dy, dx, mirrored) whose crop of padded equals image (both H×W×C)."""
    h, w = image.shape[:2]
    found = set()
    for dy, dx, mirrored in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (0, 1)):
        crop = padded[dy:dy + h, dx:dx + w]
        if mirrored:
            crop = crop[:, ::-1]
        if np.allclose(crop, image, atol=1e-5):
            found.add((dy, dx, mirrored))
    return found


def seen_transforms(ds: Dataset, augment: bool, pad=2, seed=0) -> list[set[tuple]]:
    dd = DeviceData(ds, pad=pad)
    oracle = normalised(ds, pad)
    gen = torch.Generator().manual_seed(seed)
    result = []
    for x, y in dd.batches(8, gen, augment=augment):
        for image, label in zip(x.permute(0, 2, 3, 1).numpy(), y.tolist()):
            result.append(transforms(oracle[label], image, pad))
    return result


@pytest.mark.parametrize("channels", [1, 3])
def test_stored_images_are_normalised(channels):
    ds = toy(channels)
    dd = DeviceData(ds)
    images = dd.images
    assert images.shape == (N, channels, 8, 8) and dd.labels.dtype == torch.int64
    per_channel = images.transpose(0, 1).reshape(channels, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(channels), atol=1e-5)
    assert torch.allclose(per_channel.std(1, correction=0), torch.ones(channels), atol=1e-5)
    expected = normalised(ds, 0).transpose(0, 3, 1, 2)
    assert np.allclose(images.numpy(), expected, atol=1e-5)


def test_indices_select_samples():
    dd = DeviceData(toy(), np.array([3, 17, 30]))
    assert len(dd) == 3 and dd.labels.tolist() == [3, 17, 30]


def test_batches_have_static_shapes_and_drop_the_rest():
    dd = DeviceData(toy())
    gen = torch.Generator().manual_seed(0)
    shapes = [tuple(x.shape) for x, _ in dd.batches(16, gen, augment=True)]
    assert shapes == [(16, 3, 8, 8)] * 2 and dd.num_batches(16) == 2
    kept = [len(y) for _, y in dd.batches(16, gen, augment=False, drop_last=False)]
    assert kept == [16, 16, 8] and dd.num_batches(16, drop_last=False) == 3
    assert len(list(dd.batches(16, gen, augment=True, max_batches=1))) == 1
    small = [tuple(x.shape) for x, _ in dd.batches(64, gen, augment=True)]
    assert small == [(N, 3, 8, 8)]                   # smaller than a batch: one batch of all


def test_an_epoch_shuffles_without_repeats():
    dd = DeviceData(toy())
    labels = torch.cat([y for _, y in dd.batches(8, torch.Generator().manual_seed(1), True)])
    assert sorted(labels.tolist()) == list(range(N)) and labels.tolist() != list(range(N))


def test_same_seed_same_batches_other_seed_other_batches():
    dd = DeviceData(toy())

    def epoch(seed):
        return list(dd.batches(8, torch.Generator().manual_seed(seed), augment=True))

    first, again, other = epoch(7), epoch(7), epoch(8)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][1], other[0][1])


def test_augment_crops_and_mirrors_real_images():
    seen = seen_transforms(toy(), augment=True)
    assert all(seen), "every augmented image is a crop (maybe mirrored) of its original"
    assert any((2, 2, 0) not in s for s in seen)      # some are shifted
    assert any(all(m for *_, m in s) for s in seen)   # some are mirrored
    assert any(all(not m for *_, m in s) for s in seen)


def test_no_augment_gives_the_original_images():
    seen = seen_transforms(toy(), augment=False)
    assert all((2, 2, 0) in s for s in seen)


def test_no_mirror_when_the_dataset_forbids_it():
    seen = seen_transforms(toy(flip=False), augment=True)
    assert all(any(not m for *_, m in s) for s in seen)
    assert any((2, 2, 0) not in s for s in seen)      # crops still happen


def test_pad_zero_disables_crops():
    seen = seen_transforms(toy(flip=False), augment=True, pad=0)
    assert all(s == {(0, 0, 0)} for s in seen)


def test_eval_batches_cover_every_sample_once():
    dd = DeviceData(toy(), np.arange(5, 38))
    parts = list(dd.eval_batches(10))
    assert [len(y) for _, y in parts] == [10, 10, 10, 3]
    assert torch.cat([y for _, y in parts]).tolist() == list(range(5, 38))
    assert torch.equal(torch.cat([x for x, _ in parts]), dd.images)


def test_channels_last_and_low_precision_storage():
    ds = toy()
    plain = next(DeviceData(ds).batches(8, torch.Generator().manual_seed(2), True))[0]
    dd = DeviceData(ds, dtype=torch.bfloat16, channels_last=True)
    x, _ = next(dd.batches(8, torch.Generator().manual_seed(2), True))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    assert plain.is_contiguous()
    assert torch.allclose(x.float(), plain, atol=0.05)
    assert next(dd.eval_batches(8))[0].is_contiguous(memory_format=torch.channels_last)


def test_test_part():
    dd = DeviceData(toy(test=True), part="test")
    assert dd.labels.tolist() == list(range(5))
    with pytest.raises(DataError, match="no test split"):
        DeviceData(toy(), part="test")


def test_the_batches_of_a_seed_do_not_change():
    """The draws of an epoch, in their order (permutation, row offsets, column offsets, mirror
    coins), replayed by hand on the oracle's images: what every earlier version drew, so moving
    the draws to pinned memory (or adding augmentations after them) changed no batch."""
    ds, pad = toy(), 2
    dd, oracle = DeviceData(ds, pad=pad), normalised(ds, pad)
    gen, mine = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    labels = []
    for _ in range(2):  # two epochs: the second continues the generator
        order = torch.randperm(N, generator=mine)
        dy, dx = (torch.randint(0, 2 * pad + 1, (N,), generator=mine) for _ in range(2))
        mirror = torch.rand(N, generator=mine) < 0.5
        for k, (x, y) in enumerate(dd.batches(16, gen, augment=True)):
            for j, (image, label) in enumerate(zip(x.permute(0, 2, 3, 1).numpy(), y.tolist())):
                i = 16 * k + j
                crop = oracle[order[i], dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
                assert label == order[i] and np.allclose(image, crop[:, ::-1] if mirror[i] else crop, atol=1e-5)
            labels.append(y.tolist())
    assert labels[0] == [1, 13, 36, 25, 9, 22, 31, 6, 4, 8, 32, 38, 17, 14, 16, 3]  # recorded before the change
    assert labels[3] == [28, 38, 12, 32, 15, 37, 19, 30, 31, 16, 10, 39, 1, 9, 21, 2]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_drawn_augmentation_gives_the_cpus_batches_on_the_gpu():
    """With a CPU generator (the source of truth) the draws travel from pinned memory; crops,
    mirrors, resized crops and lighting then match the CPU's batches."""
    from evo_nas.evaluate.device_data import Augment

    ds, aug = toy(), Augment(crop_scale=0.5, crop_ratio=1.3, brightness=0.3, contrast=0.3)
    cuda, cpu = DeviceData(ds, device="cuda"), DeviceData(ds)
    for (xg, yg), (xc, yc) in zip(cuda.batches(8, torch.Generator().manual_seed(5), aug),
                                  cpu.batches(8, torch.Generator().manual_seed(5), aug)):
        assert xg.is_cuda and torch.equal(yg.cpu(), yc)
        assert torch.allclose(xg.cpu(), xc, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_live_on_the_gpu_and_match_the_cpu():
    ds = toy()
    cuda = DeviceData(ds, device="cuda")
    x, y = next(cuda.batches(8, torch.Generator(device="cuda").manual_seed(0), True))
    assert x.is_cuda and y.is_cuda and x.shape == (8, 3, 8, 8)
    # A CPU generator gives the same batches on any device.
    on_gpu = next(cuda.batches(8, torch.Generator().manual_seed(3), True))
    on_cpu = next(DeviceData(ds).batches(8, torch.Generator().manual_seed(3), True))
    assert torch.equal(on_gpu[1].cpu(), on_cpu[1])
    assert torch.allclose(on_gpu[0].cpu(), on_cpu[0], atol=1e-5)


def test_images_are_bf16_only_for_bf16_training_on_cuda():
    from evo_nas.evaluate.device_data import data_dtype, on_device

    assert data_dtype("bf16", "cuda") == data_dtype("bf16", "cuda:1") == torch.bfloat16
    assert data_dtype("fp32", "cuda") == data_dtype("bf16", "cpu") == data_dtype("fp32", "cpu") == torch.float32
    assert on_device(toy(), None, "cpu").images.dtype == torch.float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_data_loaded_on_one_stream_are_read_correctly_on_another():
    """In flight, the first candidate's stream loads the resident data and every other slot's
    stream reads them: the readers wait for the loading, however late it runs on its stream."""
    ds, a, b = toy(), torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(a):
        torch.cuda._sleep(2_000_000_000)  # about a second of GPU time before the loading's kernels
        data = DeviceData(ds, device="cuda")
    with torch.cuda.stream(b):
        x, _ = next(data.eval_batches(N))
        x = x.float().cpu()
    assert torch.allclose(x, next(DeviceData(ds).eval_batches(N))[0], atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_an_fp32_evaluation_on_cuda_trains_on_fp32_images():
    from evo_nas import config as configs
    from evo_nas.evaluate.evaluator import EvalSettings, Evaluator
    from evo_nas.genome_io import PACKAGED, load_genome
    from evo_nas.journaled import Request as Task

    given = {"precision": "fp32", "train_images": 15360, "val_limit": 512, "bn_recalibration": 256, "seed": 0,
             "init_channels": 8, "depth": 2, "report": False}
    s = EvalSettings.of(configs.from_mapping(given, "fp32", "cuda", data_shape=((1, 28, 28), 10)))
    result = Evaluator(s)(Task(0, load_genome(PACKAGED / "darts_v2.yaml"), 0, s.train.epochs))
    assert result.ok, result.error
    assert result.precision == "fp32" and result.path == "graph" and result.accuracy > 0.15  # chance: 0.1
    assert isinstance(result.memory_reserved, int) and result.memory_reserved > 0
