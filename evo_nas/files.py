"""Writing files so that a crash or a full disk leaves the old version or the new one, never half
of either, and no temporary file behind.   [stdlib]"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from evo_nas.errors import DiskFull

FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left; the user's quota spent


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`, and
    fsync the folder so that the rename itself survives a power cut. On any failure the
    temporary file is removed (a leftover would fill the disk for the next writer); a full disk
    is DiskFull, naming the file and the space it needed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # a Ctrl-C too: no half-written temporary file stays behind
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in FULL:
            raise disk_full(path, len(raw)) from None
        raise
    fsync_dir(path.parent)
    return path


def append_line(path: Path, line: str) -> None:
    """Append one line and make it durable. A failed write is cut back to the previous line's
    end, so the file never holds half a line that the next append would run into."""
    raw = memoryview(line.encode("utf-8"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            done = 0
            while done < len(raw):  # unbuffered: what failed is known, nothing waits in a buffer
                done += os.write(fd, raw[done:])
            os.fsync(fd)
        except OSError as err:
            os.ftruncate(fd, start)  # frees what the half line took; needs no space itself
            if err.errno in FULL:
                raise disk_full(path, len(raw)) from None
            raise
    finally:
        os.close(fd)


def disk_full(path: str | os.PathLike, needed: int | None = None) -> DiskFull:
    """The one-line error for a write to `path` that found no space: what it needed (when
    known) and what is free."""
    path = Path(path)
    try:
        free = f"{shutil.disk_usage(path.parent if not path.is_dir() else path).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    need = f"{needed:,} bytes needed, " if needed is not None else ""
    return DiskFull(f"{path}: the disk is full ({need}{free}); free some space, then run the command again "
                    f"(a stopped run continues with `evonas resume`)")


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
