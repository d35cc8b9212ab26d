"""Every file airscene writes goes through here: a temporary created exclusively beside the target (never a
name someone else could have planted a link at), flushed to disk, then renamed over the target, so a full
disk, a kill or an exception at any moment leaves either the previous file or the new one. Failures are
one-line errors naming the file and the fix; partial files are removed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from airscene.errors import AirsceneError

WRITE_FAILURES = (OSError, RuntimeError)  # torch.save reports a full disk as a RuntimeError


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if "enforce fail" in str(error) or "write" in str(error).lower():
        return "the write failed, the disk may be full"
    return type(error).__name__


def write_failure(path: Path, what: str, error: BaseException, kept: str = "") -> AirsceneError:
    """The one-line error for a write of `what` to `path` that failed with `error`."""
    space = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free disk space" if space or not isinstance(error, OSError) else "choose a writable directory"
    return AirsceneError(f"cannot write {what} {path} ({_reason(error)}): {fix}{'; ' + kept if kept else ''}")


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform allows opening a directory)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_staged(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a new file beside `path` through `write` (exclusively created, flushed and synced) and return
    its name, for the caller to rename over `path` (publish) or delete. Raises what `write` raised, with
    the temporary removed."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def publish(staged: dict[Path, Path]) -> None:
    """Rename each staged temporary over its target (a link at the target is replaced, never followed)."""
    for temporary, target in staged.items():
        os.replace(temporary, target)
    for directory in {target.parent for target in staged.values()}:
        _sync_directory(directory)


def write_file(path: str | Path, write: Callable[[BinaryIO], None], what: str = "file", kept: str = "") -> None:
    """Atomically replace `path` by what `write(handle)` writes; `kept` says what survives a failure."""
    path = Path(path)
    try:
        publish({write_staged(path, write): path})
    except WRITE_FAILURES as error:
        raise write_failure(path, what, error, kept or f"{path.name} is as it was") from None


def write_text(path: str | Path, text: str, what: str = "file") -> None:
    write_file(path, lambda handle: handle.write(text.encode()), what)


def write_json(path: str | Path, value, what: str = "file") -> None:
    """`value` as indented JSON; NaN and infinities are refused (they are not JSON): write None instead."""
    write_text(path, json.dumps(value, indent=2, allow_nan=False) + "\n", what)


def append_line(path: str | Path, line: str, what: str = "file", kept: str = "") -> None:
    """Append one line to `path` in a single write, never through a link; on failure the file is cut back
    to its previous length, so it never ends in half a line."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise AirsceneError(f"{path} is a symbolic link: airscene does not write through links it did not make; "
                                "remove it") from None
        raise write_failure(path, what, error, kept) from None
    try:
        size = os.fstat(descriptor).st_size
        try:
            if os.write(descriptor, data) != len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, size)
            raise write_failure(path, what, error, kept) from None
    finally:
        os.close(descriptor)


def check_writable(directory: str | Path, what: str = "directory") -> Path:
    """Create `directory` if needed and prove it writable, before any work whose result would go there."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise AirsceneError(f"{what} {directory} is not writable ({error.strerror}): choose another directory "
                            "or fix its permissions") from None
    return directory
