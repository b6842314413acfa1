"""Writing files so that a crash leaves the old version or the new one, never half of either.   [stdlib]"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`, and
    fsync the folder so that the rename itself survives a power cut."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (a rename, a new file) durable; a no-op where not allowed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
