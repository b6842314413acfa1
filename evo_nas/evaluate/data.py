"""Data sets read from disk into numpy arrays: the IDX files of the MNISTs, the binary
CIFAR batches (loose or inside their .tar.gz) and user .npz files.

numpy and the standard library only: the runner and the CLI can load and check a data
set without importing torch. Nothing here unpickles anything a user hands us.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import resource
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evo_nas.config import MAXIMUM
from evo_nas.errors import ConfigError, DataError, short

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MAX_CLASSES = MAXIMUM["classes"]  # a label beyond it is a mistake, not a class

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Published files and the md5 sums their authors (and torchvision) publish for them.
CHECKSUMS: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "cifar10": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
    "cifar100": {"cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8"},
}

MIRRORS = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "cifar100": "https://www.cs.toronto.edu/~kriz/",
}


@dataclass(frozen=True)
class _Cifar:
    folder: str                 # the folder the archive unpacks to
    train: tuple[str, ...]
    test: str
    label_bytes: int            # cifar-100 records carry (coarse, fine); we keep fine
    classes: int


_CIFAR = {
    "cifar10": _Cifar("cifar-10-batches-bin",
                      tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", 1, 10),
    "cifar100": _Cifar("cifar-100-binary", ("train.bin",), "test.bin", 2, 100),
}

# Whether a horizontal mirror keeps the label: a mirrored digit can become another digit.
_FLIP = {"fashion-mnist": True, "mnist": False, "cifar10": True, "cifar100": True}
NAMES = tuple(_FLIP)

# Augmentation beyond crop and mirror, per data set: TrainConfig's crop_scale, crop_ratio,
# brightness and contrast when left at none. All off, each for its reason. Fashion-MNIST,
# measured: on the CPU search proxy (1 epoch, 1200 images, 6 random cells, paired seeds) a
# resized crop (scale 0.5, ratio 1.33) cost 1.6 ± 0.9 points of validation accuracy, a mild
# one (0.8, 1.15) 1.2 ± 1.0, lighting (0.3, 0.3) 0.8 ± 0.6. CIFAR-10/100: crop and mirror is
# the recipe the published DARTS and NAS-Bench-201 figures were trained with. MNIST: centred,
# size-normalised strokes. User data sets: nothing evonas knows about them.
_NO_EXTRA = {"crop_scale": 1.0, "crop_ratio": 1.0, "brightness": 0.0, "contrast": 0.0}
_AUGMENT = {"fashion-mnist": _NO_EXTRA, "mnist": _NO_EXTRA, "cifar10": _NO_EXTRA, "cifar100": _NO_EXTRA}


def augment_defaults(name: str) -> dict[str, float]:
    """The data set's augmentation settings (those of a user's .npz: none beyond crop and mirror)."""
    return dict(_AUGMENT.get(name, _NO_EXTRA))


@dataclass(frozen=True, eq=False)   # eq=False: arrays have no useful ==, identity is enough
class Dataset:
    """A whole data set in memory. Images are uint8 N×H×W×C, labels int64 N."""

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray | None = field(repr=False)
    y_test: np.ndarray | None = field(repr=False)
    classes: int
    flip: bool
    source: str
    # Per channel, pixels scaled to [0, 1]; computed once from x_train.
    mean: tuple[float, ...] = field(init=False)
    std: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        where = self.source
        x = _as_images(self.x_train, "x_train", where)
        y = _as_labels(self.y_train, len(x), "y_train", where)
        object.__setattr__(self, "x_train", x)
        object.__setattr__(self, "y_train", y)
        if (self.x_test is None) != (self.y_test is None):
            raise DataError(f"{where}: x_test and y_test must be given together")
        if self.x_test is not None:
            xt = _as_images(self.x_test, "x_test", where)
            if xt.shape[1:] != x.shape[1:]:
                raise DataError(f"{where}: x_test images are {xt.shape[1:]} but x_train "
                                f"images are {x.shape[1:]} (H, W, C)")
            object.__setattr__(self, "x_test", xt)
            object.__setattr__(self, "y_test", _as_labels(self.y_test, len(xt), "y_test", where))
        for labels in (self.y_train, self.y_test):
            if labels is not None and labels.max() >= self.classes:
                raise DataError(f"{where}: label {labels.max()} >= classes={self.classes}")
        mean, std = _channel_stats(x)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the shape a network sees."""
        _, h, w, c = self.x_train.shape
        return (c, h, w)


def _as_images(x: np.ndarray, what: str, where: str) -> np.ndarray:
    """Check uint8 N×H×W or N×H×W×C (C = 1 or 3); return N×H×W×C."""
    if x.dtype != np.uint8:
        raise DataError(f"{where}: {what} has dtype {x.dtype}, expected uint8 pixels 0..255")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{where}: {what} has shape {x.shape}, expected N×H×W or N×H×W×C "
                        "with C = 1 or 3")
    if len(x) == 0:
        raise DataError(f"{where}: {what} holds no images")
    return x


def _as_labels(y: np.ndarray, n: int, what: str, where: str) -> np.ndarray:
    """Check integer labels, one per image, none negative; return int64."""
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {what} has dtype {y.dtype}, expected integer class labels")
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where}: {what} has shape {y.shape}, expected ({n},): "
                        "one label per image")
    if y.min() < 0:
        raise DataError(f"{where}: {what} holds a negative label ({y.min()})")
    return y.astype(np.int64, copy=False)


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of x/255 from exact integer sums, taken in chunks so that
    no float copy of the whole array (47M pixels for Fashion-MNIST) is made."""
    flat = x.reshape(-1, x.shape[-1])                       # pixels × C
    sums = flat.sum(axis=0, dtype=np.uint64).astype(np.float64)
    squares = np.zeros(flat.shape[1], np.float64)
    for start in range(0, len(flat), 1 << 20):
        chunk = flat[start:start + (1 << 20)].astype(np.uint32)
        squares += (chunk * chunk).sum(axis=0, dtype=np.uint64)
    mean = sums / len(flat)
    var = np.maximum(squares / len(flat) - mean**2, 0.0)
    return tuple(float(m) for m in mean / 255), tuple(float(s) for s in np.sqrt(var) / 255)


# ---------------------------------------------------------------- file formats

def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a valid gzip file, perhaps truncated ({_one_line(err)}); "
                        "download it again") from None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as a uint8 array of its shape."""
    path = Path(path)
    raw = _read_bytes(path)
    # Header: two zero bytes, type code (0x08 = unsigned byte), number of dimensions,
    # then one big-endian uint32 per dimension.
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] == 0:
        raise DataError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty)'}, expected "
                        "0000080N (unsigned bytes, N dimensions); is it an IDX file?")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes); download it again")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX data has {len(raw) - header} bytes, its header "
                        f"{shape} says {expected}; the file is truncated or corrupt")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _idx_paths(folder: Path) -> list[Path] | None:
    """The four MNIST-format files in folder (each .gz or not), or None if any is missing."""
    found = []
    for stem in _IDX_FILES:
        options = [folder / f"{stem}.gz", folder / stem]
        hit = next((p for p in options if p.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def _read_idx_set(paths: list[Path]) -> tuple[np.ndarray, ...]:
    """x_train, y_train, x_test, y_test from the four IDX files."""
    arrays = [read_idx(p) for p in paths]
    for path, array, ndim in zip(paths, arrays, (3, 1, 3, 1)):
        if array.ndim != ndim:
            raise DataError(f"{path}: IDX array has {array.ndim} dimensions, expected {ndim}")
    for images, labels in ((0, 1), (2, 3)):
        if len(arrays[images]) != len(arrays[labels]):
            raise DataError(f"{paths[labels]}: {len(arrays[labels])} labels for "
                            f"{len(arrays[images])} images in {paths[images].name}")
    return tuple(arrays)


def _cifar_records(raw: bytes, spec: _Cifar, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images N×32×32×3 and labels from binary CIFAR records (label byte(s) + 3072 pixels)."""
    size = spec.label_bytes + 3 * 32 * 32
    if len(raw) == 0 or len(raw) % size:
        raise DataError(f"{where}: {len(raw)} bytes is not a whole number of {size}-byte "
                        "CIFAR records; the file is truncated or corrupt")
    records = np.frombuffer(raw, np.uint8).reshape(-1, size)
    labels = records[:, spec.label_bytes - 1].astype(np.int64)
    # Each record stores the red plane, then green, then blue: C×H×W -> H×W×C.
    images = records[:, spec.label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    if labels.max() >= spec.classes:
        raise DataError(f"{where}: label {labels.max()} out of range for {spec.classes} classes")
    return np.ascontiguousarray(images), labels


def _cifar_members(spec: _Cifar) -> list[str]:
    return [*spec.train, spec.test]


def _read_cifar_folder(folder: Path, spec: _Cifar) -> tuple[np.ndarray, ...]:
    parts = [_cifar_records((folder / m).read_bytes(), spec, str(folder / m))
             for m in _cifar_members(spec)]
    return _join_cifar(parts)


def _read_cifar_archive(archive: Path, spec: _Cifar) -> tuple[np.ndarray, ...]:
    """Read the record files out of the .tar.gz in memory, in one pass, extracting nothing."""
    wanted = {f"{spec.folder}/{m}": m for m in _cifar_members(spec)}
    data: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    data[wanted[member.name]] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{archive}: cannot read the archive ({_one_line(err)}); "
                        "download it again") from None
    missing = [m for m in _cifar_members(spec) if m not in data]
    if missing:
        raise DataError(f"{archive}: archive lacks {spec.folder}/{missing[0]}; "
                        f"is it the binary version of {spec.folder}?")
    parts = [_cifar_records(data[m], spec, f"{archive}:{m}") for m in _cifar_members(spec)]
    return _join_cifar(parts)


def _join_cifar(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    train, test = parts[:-1], parts[-1]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, test[0], test[1]


# ---------------------------------------------------------------- finding the files

def _reader(name: str, folder: Path) -> Callable[[], tuple[np.ndarray, ...]] | None:
    """A function that reads data set `name` from folder, or None when it is not there."""
    if name in ("fashion-mnist", "mnist"):
        paths = _idx_paths(folder)
        return None if paths is None else (lambda: _read_idx_set(paths))
    spec = _CIFAR[name]
    for base in (folder / spec.folder, folder):
        if all((base / m).is_file() for m in _cifar_members(spec)):
            return lambda base=base: _read_cifar_folder(base, spec)
    archive = folder / next(iter(CHECKSUMS[name]))
    if archive.is_file():
        return lambda: _read_cifar_archive(archive, spec)
    return None


def present(name: str, data_dir: str | Path | None = None) -> bool:
    """Whether data set `name` lies in the folders load_dataset would look in (nothing is read
    or downloaded)."""
    return any(_reader(name, folder) is not None for folder in search_folders(name, data_dir))


def _cache_dir(name: str) -> Path:
    """Where a download goes: $EVONAS_DATA/<name>, else the user cache. One folder per
    data set, because MNIST and Fashion-MNIST files have the same names."""
    if os.environ.get("EVONAS_DATA"):
        return Path(os.environ["EVONAS_DATA"]).expanduser() / name
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "evonas" / name


def search_folders(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Folders looked in, in order. A folder the user named is the only place looked in:
    --data-dir (as <dir>/<name>, then <dir>), else $EVONAS_DATA (the same way, and downloads go
    there); only when neither is given, the Debian package's folder, then the download cache."""
    named = data_dir or os.environ.get("EVONAS_DATA")
    if named:
        root = Path(named).expanduser()
        return [root / name, root]
    folders = [DEBIAN_FASHION_MNIST] if name == "fashion-mnist" else []
    return folders + [_cache_dir(name)]


# ---------------------------------------------------------------- download

def _fetch(url: str, target: Path, md5: str) -> None:
    """Download url to target through a temp file in the same folder; keep it only if
    its md5 matches. A failed transfer raises what urllib raises (URLError is an OSError)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise DataError(f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected "
                            f"{md5}; the mirror or the connection is corrupt, try again or "
                            "set EVONAS_DATA_MIRROR")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _mirror(name: str) -> str:
    return os.environ.get("EVONAS_DATA_MIRROR") or MIRRORS[name]


def _download(name: str) -> Path:
    """Fetch the published files of `name` into its cache folder; return the folder."""
    folder = _cache_dir(name)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    base = _mirror(name)
    try:
        for filename, md5 in CHECKSUMS[name].items():
            if not (folder / filename).is_file():
                _fetch(base.rstrip("/") + "/" + filename, folder / filename, md5)
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    return folder


def _how_to_get(name: str) -> str:
    url = MIRRORS[name]
    if name == "fashion-mnist":
        return (f"`apt-get install dataset-fashion-mnist`, or put the four IDX .gz files from "
                f"{url} in --data-dir or $EVONAS_DATA")
    if name == "mnist":
        return f"put the four IDX .gz files from {url} in --data-dir or $EVONAS_DATA"
    archive = next(iter(CHECKSUMS[name]))
    return (f"put {archive} from {url}{archive} (or its extracted {_CIFAR[name].folder} "
            "folder) in --data-dir or $EVONAS_DATA")


def _not_found(name: str, folders: list[Path], why: str) -> DataError:
    if name in _CIFAR:
        wanted = f"{_CIFAR[name].folder}/ or {next(iter(CHECKSUMS[name]))}"
    else:
        wanted = ", ".join(f"{s}[.gz]" for s in _IDX_FILES)
    where = ", ".join(str(f) for f in folders)
    return DataError(f"{name} not found: looked for {wanted} in {where}; {why}; "
                     f"to get it: {_how_to_get(name)}")


# ---------------------------------------------------------------- public loaders

NPZ_ARRAYS = ("x", "y", "x_test", "y_test")  # what a user's .npz may give; other members are never read


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"npz file {path} not found; give npz:PATH to a .npz with arrays "
                        "x (uint8 N×H×W[×C]) and y (integer labels), e.g. from numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            found = [key for key in npz.files if key in NPZ_ARRAYS]
            _check_npz_sizes(path, npz.zip, found)  # before anything is inflated
            arrays = {key: npz[key] for key in found}
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read as a .npz of plain arrays ({_one_line(err)}); "
                        "save it with numpy.savez and no object arrays") from None
    except MemoryError:
        raise DataError(f"{path}: not enough memory to load its arrays") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: no array '{key}' (found: {', '.join(arrays) or 'none'}); "
                            "the file needs x (uint8 images) and y (integer labels)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: has only one of x_test and y_test; give both or neither")
    return arrays


def _check_npz_sizes(path: Path, archive: zipfile.ZipFile, keys: list[str]) -> None:
    """Refuse, before inflating anything, an array whose header claims more bytes than its
    member holds, and arrays that together would not fit in the memory this process can get
    (a few MB of zip can inflate to GBs). Sizes come from the zip directory and the .npy headers."""
    total = 0
    for key in keys:
        info = archive.getinfo(f"{key}.npy" if f"{key}.npy" in archive.namelist() else key)
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            header = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if header is not None:  # (3, 0): utf-8 field names, never image data; np.load checks it
                shape, _, dtype = header(member)
                claimed = math.prod(shape) * dtype.itemsize
                if claimed > info.file_size:
                    raise DataError(f"{path}: {key} claims {_size(claimed)} (shape {short(shape)}) but holds "
                                    f"{_size(info.file_size)}; the file is damaged or not made by numpy.savez")
        total += info.file_size
    room = memory_room()
    if room is not None and total > room:
        raise DataError(f"{path}: its arrays take {_size(total)} once inflated, more than the {_size(room)} of "
                        f"memory this process can still get; use a smaller data set or more memory")


def memory_room() -> int | None:
    """Bytes this process can still allocate, as far as it can tell: the memory the system has
    available, less for its own limits (RLIMIT_AS, RLIMIT_DATA) and its cgroup's (Linux; None
    where none of these can be read)."""
    status, room = _proc_fields("/proc/self/status"), []
    available = _proc_fields("/proc/meminfo").get("MemAvailable")
    if available is not None:
        room.append(available)
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            room.append(max(0, soft - status.get(used, 0)))
    try:
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap != "max":
            room.append(max(0, int(cap) - int(Path("/sys/fs/cgroup/memory.current").read_text())))
    except (OSError, ValueError):
        pass
    return min(room) if room else None


def _proc_fields(path: str) -> dict[str, int]:
    """A /proc file's "Name:   123 kB" lines as bytes by name ({} where there is no /proc)."""
    out = {}
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                out[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def load_npz(path: str | Path, flip: bool = False, classes: int | None = None) -> Dataset:
    """A user data set: arrays x (uint8 N×H×W[×C]) and y (int labels), optionally x_test and
    y_test. Labels must be 0..K-1: K is `classes` when given, else every class from 0 to the
    largest label must appear in the training split (a gap is more likely a mistake than a class)."""
    path = Path(path).expanduser()
    arrays = _read_npz(path)
    x = _as_images(arrays["x"], "x", str(path))
    y = _as_labels(arrays["y"], len(x), "y", str(path))
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _as_images(arrays["x_test"], "x_test", str(path))
        y_test = _as_labels(arrays["y_test"], len(x_test), "y_test", str(path))
    return Dataset(f"npz:{path}", x, y, x_test, y_test, classes or _npz_classes(y, path), flip, str(path))


def _npz_classes(y: np.ndarray, path: Path) -> int:
    present = np.unique(y)  # sorted, none negative (_as_labels)
    k = int(present[-1]) + 1
    if k > MAX_CLASSES:
        raise DataError(f"{path}: labels run to {k - 1}, beyond the {MAX_CLASSES:,} classes evonas allows; "
                        f"labels must be 0..K-1")
    if len(present) != k:
        first = int(np.flatnonzero(present != np.arange(len(present)))[0])  # the first label not in place
        raise DataError(f"{path}: labels run to {k - 1} but {k - len(present)} of 0..{k - 1} never appear in y "
                        f"(first missing: {first}); labels must be 0..K-1, or give the class count "
                        f"with --classes K")
    return k


def load_dataset(name: str, data_dir: str | Path | None = None, classes: int | None = None) -> Dataset:
    """Load a data set by name: fashion-mnist, mnist, cifar10, cifar100 or npz:PATH.

    Looks in the folders of search_folders(); when none holds it, downloads the published
    files (md5-checked) into the cache folder unless EVONAS_NO_DOWNLOAD=1.
    """
    if name.startswith("npz:"):
        return load_npz(name[len("npz:"):], classes=classes)
    if name not in _FLIP:
        raise DataError(f"unknown data set '{name}'; choose one of {', '.join(NAMES)} "
                        "or npz:PATH")
    fixed = _CIFAR[name].classes if name in _CIFAR else 10
    if classes not in (None, fixed):
        raise DataError(f"{name} has {fixed} classes, not {classes}; --classes is for npz data sets")
    folders = search_folders(name, data_dir)
    for folder in folders:
        reader = _reader(name, folder)
        if reader is not None:
            return _build(name, folder, reader())
    if data_dir:
        raise _not_found(name, folders, "--data-dir names the folder to use")
    if os.environ.get("EVONAS_NO_DOWNLOAD", "") not in ("", "0"):
        raise _not_found(name, folders, "download disabled by EVONAS_NO_DOWNLOAD")
    try:
        folder = _download(name)
    except (OSError, ValueError, http.client.HTTPException) as err:   # no network, bad URL
        why = f"download from {_mirror(name)} failed ({_one_line(err)})"
        raise _not_found(name, folders, why) from None
    return _build(name, folder, _reader(name, folder)())


def _build(name: str, folder: Path, arrays: tuple[np.ndarray, ...]) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    classes = _CIFAR[name].classes if name in _CIFAR else 10
    return Dataset(name, x_train, y_train, x_test, y_test, classes, _FLIP[name], str(folder))


# ---------------------------------------------------------------- splits

def split(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices into n training samples, fixed by seed.
    Only ever applied to the training part: the test set is kept for the final word."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1)")
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n_val >= n:
        raise ConfigError(f"val_fraction={val_fraction} of {n} samples leaves none to train on")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def subset(indices: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """At most `limit` of indices, chosen by seed and sorted: a smaller proxy training set.
    None, or a limit not below len(indices), keeps them all."""
    if limit is None or limit >= len(indices):
        return np.asarray(indices)
    if limit < 1:
        raise ConfigError(f"subset limit={limit} must be at least 1")
    chosen = np.random.default_rng(seed).choice(len(indices), size=limit, replace=False)
    return np.sort(np.asarray(indices)[chosen])


def proxy_split(n: int, cfg, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices a search uses: the seeded split of the training set, then
    the seeded subsets of cfg.train_limit / cfg.val_limit (a config.DataConfig)."""
    train_idx, val_idx = split(n, cfg.val_fraction, seed)
    if cfg.train_limit:
        train_idx = subset(train_idx, cfg.train_limit, seed)
    if cfg.val_limit:
        val_idx = subset(val_idx, cfg.val_limit, seed + 1)
    return train_idx, val_idx


PARTS = ("train", "val", "trainval", "test")  # a search's train and validation splits; the whole training set; test


def part_indices(dataset: Dataset, data, seed: int, part: str) -> np.ndarray | None:
    """Which images of `dataset` a part is (None: all of its split), for a config.DataConfig
    `data` and the seed that fixes the split: "train" and "val", the search's seeded split
    with its limits (proxy_split); "trainval", the whole training set (a final training's, at
    most data.train_limit of it); "test", the test split (at most data.test_limit)."""
    if part in ("train", "val"):
        return proxy_split(len(dataset.y_train), data, seed)[part == "val"]
    if part == "trainval":
        return subset(np.arange(len(dataset.y_train)), data.train_limit, seed) if data.train_limit else None
    if part != "test":
        raise ValueError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    if dataset.y_test is None:
        raise DataError(f"{dataset.name} from {dataset.source} has no test split; add arrays x_test and y_test to it")
    return subset(np.arange(len(dataset.y_test)), data.test_limit, seed + 1) if data.test_limit else None


_LOADED: dict = {}  # one data set per process at a time


def cached_dataset(name: str, data_dir: str | Path | None = None, classes: int | None = None) -> Dataset:
    """load_dataset, read once per process for as long as the same data set is asked for (a
    named data set's class count is fixed: naming it, right or wrong, reads nothing again)."""
    npz = name.startswith("npz:")
    key = (name, data_dir, classes if npz else None, os.environ.get("EVONAS_DATA"))
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_dataset(name, data_dir, classes if npz else None)
    if not npz and classes not in (None, _LOADED[key].classes):
        raise DataError(f"{name} has {_LOADED[key].classes} classes, not {classes}; --classes is for npz data sets")
    return _LOADED[key]


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
