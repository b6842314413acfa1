"""Loading data sets from their real on-disk formats, written here byte by byte."""

import functools
import gzip
import hashlib
import http.server
import io
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from evo_nas.errors import ConfigError, DataError
from evo_nas.evaluate import data
from evo_nas.evaluate.data import load_dataset, load_npz, read_idx, split, subset

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No user data folders or caches leak in; downloads only where a test allows them."""
    monkeypatch.delenv("EVONAS_DATA", raising=False)
    monkeypatch.delenv("EVONAS_DATA_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("EVONAS_NO_DOWNLOAD", "1")


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian uint32 sizes, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def write_mnist(folder: Path, rng, n_train=12, n_test=5, gz=True, classes=10):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              rng.integers(0, classes, n_train).astype(np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              rng.integers(0, classes, n_test).astype(np.uint8))
    for name, array in zip(IDX_NAMES, arrays):
        write_idx(folder / (name + (".gz" if gz else "")), array)
    return arrays


def cifar_bytes(images: np.ndarray, labels: np.ndarray, coarse=None) -> bytes:
    """Records of [coarse label], label, then the R, G and B planes of a 32×32 image."""
    out = bytearray()
    for i, (image, label) in enumerate(zip(images, labels)):
        if coarse is not None:
            out.append(int(coarse[i]))
        out.append(int(label))
        out += image.transpose(2, 0, 1).tobytes()
    return bytes(out)


def make_cifar10(rng, per_file=3):
    files, xs, ys = {}, [], []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        x = rng.integers(0, 256, (per_file, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, per_file)
        files[name] = cifar_bytes(x, y)
        xs.append(x)
        ys.append(y)
    return files, np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


# ---------------------------------------------------------------- the real data set

@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="needs apt package dataset-fashion-mnist")
def test_fashion_mnist_loads_from_the_debian_folder():
    ds = load_dataset("fashion-mnist")
    assert ds.source == str(data.DEBIAN_FASHION_MNIST)
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.classes == 10 and ds.flip is True and ds.input_shape == (1, 28, 28)
    # Published facts: 6000 training and 1000 test images per class.
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-4)


# ---------------------------------------------------------------- IDX

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (4, 5, 6), (2, 3, 4, 3)])
def test_idx_round_trip(tmp_path, suffix, shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    write_idx(tmp_path / f"a-idx{suffix}", array)
    back = read_idx(tmp_path / f"a-idx{suffix}")
    assert back.dtype == np.uint8 and np.array_equal(back, array)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_a_data_dir_subfolder_and_does_not_flip(tmp_path, gz):
    arrays = write_mnist(tmp_path / "mnist", np.random.default_rng(2), gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.flip is False and ds.classes == 10 and ds.source == str(tmp_path / "mnist")
    assert np.array_equal(ds.x_train[..., 0], arrays[0])
    assert np.array_equal(ds.y_train, arrays[1]) and ds.y_train.dtype == np.int64
    assert np.array_equal(ds.x_test[..., 0], arrays[2]) and np.array_equal(ds.y_test, arrays[3])


def test_named_subfolder_wins_over_root_and_env_var_is_searched(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    write_mnist(tmp_path, rng, n_train=4)                 # in the root itself
    named = write_mnist(tmp_path / "mnist", rng, n_train=6)
    monkeypatch.setenv("EVONAS_DATA", str(tmp_path))
    ds = load_dataset("mnist")
    assert len(ds.x_train) == 6 and np.array_equal(ds.x_train[..., 0], named[0])


def test_bad_idx_magic_names_the_file(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(4))
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + struct.pack(">I", 12) + bytes(48)))
    with pytest.raises(DataError, match="magic") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_truncated_idx_names_the_file(tmp_path):
    array = np.zeros((10, 28, 28), np.uint8)
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, array)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.ones((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_label_count_must_match_image_count(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(5))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="3 labels for 5 images"):
        load_dataset("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------- CIFAR

def test_cifar10_folder_round_trip(tmp_path):
    files, x, y, xt, yt = make_cifar10(np.random.default_rng(6))
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert np.array_equal(ds.x_train, x) and np.array_equal(ds.y_train, y)
    assert np.array_equal(ds.x_test, xt) and np.array_equal(ds.y_test, yt)
    assert ds.classes == 10 and ds.flip is True and ds.input_shape == (3, 32, 32)


def test_cifar10_archive_read_in_memory(tmp_path):
    files, x, _, _, yt = make_cifar10(np.random.default_rng(7))
    root = tmp_path / "cifar10"
    root.mkdir()
    write_tar(root / "cifar-10-binary.tar.gz",
              {f"cifar-10-batches-bin/{n}": raw for n, raw in files.items()})
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert np.array_equal(ds.x_train, x) and np.array_equal(ds.y_test, yt)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-binary.tar.gz"]  # nothing extracted


def test_cifar100_keeps_the_fine_label(tmp_path):
    rng = np.random.default_rng(8)
    x, xt = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (6, 2))
    fine, fine_t = np.array([99, 0, 57, 3, 42, 11]), np.array([5, 98])
    write_tar(tmp_path / "cifar-100-binary.tar.gz", {
        "cifar-100-binary/train.bin": cifar_bytes(x, fine, coarse=fine % 20),
        "cifar-100-binary/test.bin": cifar_bytes(xt, fine_t, coarse=fine_t % 20)})
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.classes == 100 and np.array_equal(ds.y_train, fine)
    assert np.array_equal(ds.y_test, fine_t) and np.array_equal(ds.x_test, xt)


def test_truncated_cifar_batch_names_the_file(tmp_path):
    files, *_ = make_cifar10(np.random.default_rng(9))
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw[:-1] if name == "data_batch_3.bin" else raw)
    with pytest.raises(DataError, match="data_batch_3.bin.*truncated"):
        load_dataset("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------- npz

def test_npz_loads_and_counts_classes_over_both_splits(tmp_path):
    rng = np.random.default_rng(10)
    x = rng.integers(0, 256, (8, 5, 6), dtype=np.uint8)
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=np.arange(8) % 3, x_test=x[:2], y_test=np.array([0, 6], np.int32))
    with pytest.raises(DataError, match="label 6 >= classes=3"):  # the labels say 3 classes
        load_dataset(f"npz:{path}")
    ds = load_dataset(f"npz:{path}", classes=7)  # unless the user says otherwise
    assert ds.x_train.shape == (8, 5, 6, 1) and ds.input_shape == (1, 5, 6)
    assert ds.classes == 7 and ds.flip is False and ds.y_test.dtype == np.int64
    assert load_npz(path, flip=True, classes=7).flip is True


@pytest.mark.parametrize("top", [57, 1000])
def test_npz_labels_with_gaps_need_the_class_count(tmp_path, top):
    path = tmp_path / "gaps.npz"
    np.savez(path, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 2, top]))
    with pytest.raises(DataError, match=f"labels run to {top} but {top - 3} of 0..{top} never appear.*--classes K"):
        load_dataset(f"npz:{path}")
    assert load_dataset(f"npz:{path}", classes=top + 1).classes == top + 1


def test_a_named_folder_is_the_only_place_looked_in(tmp_path, monkeypatch):
    """--data-dir without the files is an error, not a silent fall back to the system copy."""
    with pytest.raises(DataError, match="--data-dir names the folder to use"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere")
    monkeypatch.setenv("EVONAS_DATA", str(tmp_path / "empty"))
    assert data.search_folders("fashion-mnist") == [tmp_path / "empty" / "fashion-mnist", tmp_path / "empty"]


def test_npz_without_test_split(tmp_path):
    path = tmp_path / "rgb.npz"
    np.savez(path, x=np.zeros((3, 4, 4, 3), np.uint8), y=np.array([0, 1, 1]))
    ds = load_npz(path)
    assert ds.x_test is None and ds.y_test is None and ds.classes == 2


X8 = np.zeros((4, 6, 6), np.uint8)
Y4 = np.arange(4)
X5 = np.zeros((2, 5, 5), np.uint8)   # smaller images than X8


@pytest.mark.parametrize("arrays, message", [
    ({"x": X8.astype(np.float32), "y": Y4}, "x has dtype float32"),
    ({"x": X8[:, 0], "y": Y4}, "x has shape"),
    ({"x": np.zeros((4, 6, 6, 2), np.uint8), "y": Y4}, "C = 1 or 3"),
    ({"x": X8, "y": Y4.astype(float)}, "y has dtype float64"),
    ({"x": X8, "y": Y4[:3]}, r"y has shape \(3,\), expected \(4,\)"),
    ({"x": X8, "y": Y4 - 1}, "negative label"),
    ({"x": X8}, "no array 'y'"),
    ({"x": X8, "y": Y4, "x_test": X8}, "only one of x_test and y_test"),
    ({"x": X8, "y": Y4, "x_test": X5, "y_test": Y4[:2]}, "x_test images"),
    ({"x": X8, "y": Y4, "x_test": X8, "y_test": -Y4}, "y_test holds a negative label"),
])
def test_npz_validation(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(f"npz:{path}")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_npz_refuses_pickled_arrays_and_non_npz_files(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=Y4)
    with pytest.raises(DataError, match="no object arrays"):
        load_npz(path)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_npz(tmp_path / "text.npz")
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "absent.npz")


# ---------------------------------------------------------------- missing data

@pytest.mark.parametrize("name, hint", [
    ("mnist", "ossci-datasets"),
    ("cifar10", "cifar-10-binary.tar.gz"),
    ("cifar100", "cifar-100-binary"),
])
def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path, name, hint):
    bogus = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_dataset(name, data_dir=bogus)
    message = str(err.value)
    assert "\n" not in message and f"{name} not found" in message
    assert str(bogus) in message and str(bogus / name) in message
    assert "--data-dir names the folder to use" in message and hint in message


def test_missing_fashion_mnist_suggests_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist")
    assert str(tmp_path / "not-installed") in str(err.value)


def test_unknown_name():
    with pytest.raises(DataError, match="unknown data set 'svhn'.*npz:PATH"):
        load_dataset("svhn")


# ---------------------------------------------------------------- download

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """An HTTP server on localhost serving tmp_path/served as EVONAS_DATA_MIRROR."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("EVONAS_DATA_MIRROR", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.delenv("EVONAS_NO_DOWNLOAD")
    monkeypatch.setenv("EVONAS_DATA", str(tmp_path / "cache"))
    yield served
    server.shutdown()
    server.server_close()


def _md5s(folder: Path) -> dict[str, str]:
    return {n + ".gz": hashlib.md5((folder / (n + ".gz")).read_bytes()).hexdigest()
            for n in IDX_NAMES}


def test_download_checks_md5_then_loads(tmp_path, mirror, monkeypatch):
    arrays = write_mnist(mirror, np.random.default_rng(11))
    monkeypatch.setitem(data.CHECKSUMS, "mnist", _md5s(mirror))
    ds = load_dataset("mnist")
    cache = tmp_path / "cache" / "mnist"
    assert ds.source == str(cache) and np.array_equal(ds.y_train, arrays[1])
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in IDX_NAMES)


def test_checksum_mismatch_leaves_nothing_behind(tmp_path, mirror, monkeypatch):
    write_mnist(mirror, np.random.default_rng(12))
    sums = _md5s(mirror)
    sums[IDX_NAMES[0] + ".gz"] = "0" * 32           # the first file fetched is "corrupt"
    monkeypatch.setitem(data.CHECKSUMS, "mnist", sums)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("mnist")
    assert not list((tmp_path / "cache").rglob("*"))     # not even a .part file


def test_unreachable_mirror_is_a_data_error(tmp_path, mirror):
    with pytest.raises(DataError, match="download from .* failed") as err:
        load_dataset("mnist")   # served folder is empty: 404
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache" / "mnist").exists()


# ---------------------------------------------------------------- splits

@pytest.mark.parametrize("n, fraction, n_val", [(100, 0.1, 10), (7, 0.01, 1), (10, 0.0, 0)])
def test_split_is_a_seeded_partition(n, fraction, n_val):
    train, val = split(n, fraction, seed=3)
    assert len(val) == n_val and len(train) == n - n_val
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    again = split(n, fraction, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)


def test_split_seeds_differ_and_bad_fractions_are_refused():
    assert not np.array_equal(split(1000, 0.1, seed=0)[1], split(1000, 0.1, seed=1)[1])
    for fraction in (-0.1, 1.0):
        with pytest.raises(ConfigError):
            split(10, fraction)
    with pytest.raises(ConfigError):
        split(1, 0.5)


def test_subset_is_seeded_and_sorted():
    indices = np.arange(0, 200, 2)
    small = subset(indices, 10, seed=5)
    assert len(small) == 10 and set(small) <= set(indices) and np.all(np.diff(small) > 0)
    assert np.array_equal(small, subset(indices, 10, seed=5))
    assert not np.array_equal(small, subset(indices, 10, seed=6))
    assert np.array_equal(subset(indices, None), indices)
    assert np.array_equal(subset(indices, 1000), indices)
