"""Every file airscene writes goes through here: a temporary created exclusively beside the target (never a
name someone else could have planted a link at), flushed to disk, then renamed over the target, so a full
disk, a kill or an exception at any moment leaves either the previous file or the new one. Failures are
one-line errors naming the file and the fix; partial files are removed."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
import stat
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


def _file_mode() -> int:
    """What open() would give a new file: 0666 less the process's umask (read once, at import)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def write_staged(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a new file beside `path` through `write` (exclusively created, flushed and synced) and return
    its name, for the caller to rename over `path` (publish) or delete. Raises what `write` raised, with
    the temporary removed."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    temporary = Path(name)
    try:
        os.fchmod(descriptor, FILE_MODE)  # mkstemp's 0600 would make every output private to its writer
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def publish(staged: dict[Path, Path]) -> None:
    """Rename each staged temporary over its target (a link at the target is replaced, never followed); if a
    rename fails, the temporaries not yet renamed are removed before the error goes on."""
    try:
        for temporary, target in staged.items():
            os.replace(temporary, target)
    except OSError:
        for temporary in staged:
            temporary.unlink(missing_ok=True)
        raise
    for directory in {target.parent for target in staged.values()}:
        _sync_directory(directory)


def write_file(path: str | Path, write: Callable[[BinaryIO], None], what: str = "file", kept: str = "") -> None:
    """Atomically replace `path` by what `write(handle)` writes; `kept` says what survives a failure."""
    path = Path(path)
    kept = kept or (f"{path.name} is as it was" if path.is_file() else "nothing was written there")
    try:
        publish({write_staged(path, write): path})
    except WRITE_FAILURES as error:
        raise write_failure(path, what, error, kept) from None


def write_text(path: str | Path, text: str, what: str = "file") -> None:
    write_file(path, lambda handle: handle.write(text.encode()), what)


def json_ready(value):
    """`value` with every NaN and infinity (which JSON cannot hold) written as null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def write_json(path: str | Path, value, what: str = "file") -> None:
    """`value` as indented JSON, NaN and infinities as null."""
    write_text(path, json.dumps(json_ready(value), indent=2, allow_nan=False) + "\n", what)


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


MIN_FREE_BYTES = 1 << 20  # a directory with less free space than this is full for airscene's purposes


def check_writable(directory: str | Path, what: str = "directory", create: bool = True) -> Path:
    """Prove `directory` writable and not full (creating it if `create`), before any work whose result would
    go there."""
    directory = as_path(directory, what)
    if not create and not directory.is_dir():
        raise AirsceneError(f"{what} {directory} does not exist: check the path")
    file = next((part for part in (directory, *directory.parents) if part.exists() and not part.is_dir()), None)
    if file is not None:
        raise AirsceneError(f"{what} {directory}: {file} is a file, not a folder: choose another directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
        free = shutil.disk_usage(directory).free
    except OSError as error:
        raise AirsceneError(f"{what} {directory} is not writable ({error.strerror}): choose another directory "
                            "or fix its permissions") from None
    if free < MIN_FREE_BYTES:
        raise AirsceneError(f"{what} {directory} is on a full disk ({free:,} bytes free): free disk space")
    return directory


def claim_directory(directory: Path, marker: str, what: str, made_earlier: Callable[[list[str]], bool]) -> None:
    """Mark `directory` as airscene's `what` with the file `marker`, or refuse it: airscene writes only into a
    folder holding its marker, a new or empty one, or one whose entries `made_earlier` recognises as written by
    an airscene from before the marker; anyone else's folder is never written into."""
    if holds_marker(directory, marker, what):
        return
    entries = sorted(entry.name for entry in directory.iterdir())
    if entries and not made_earlier(entries):
        raise AirsceneError(f"{what} {directory} holds files that airscene did not write ({listed(entries)}): airscene "
                            "writes only into a new or empty folder, or one of its own; choose a new --out")
    write_text(directory / marker, marker_text(what), f"{what} marker")


def marker_text(what: str) -> str:
    return f"airscene {what}\n"


def holds_marker(directory: Path, marker: str, what: str) -> bool:
    """Whether `directory` holds the file `marker` that airscene writes into its `what`, saying so (a file of that
    name with anything else in it is someone else's)."""
    path, text = directory / marker, marker_text(what)
    return path.is_file() and not path.is_symlink() and path.stat().st_size == len(text) and path.read_text() == text


def listed(names: list[str], most: int = 3) -> str:
    """The first few of `names`, as an error message names a folder's contents."""
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def ours_lock(path: Path) -> bool:
    """Whether `path` is a lock airscene left (lock_directory): a plain file holding nothing but a pid."""
    return (path.is_file() and not path.is_symlink() and path.stat().st_size <= 32
            and path.read_bytes().strip().isdigit() or (path.is_file() and path.stat().st_size == 0))


def outside(path: Path, sources, flag: str) -> None:
    """Refuse an output `path` that is, or lies inside, a file or folder the command reads (`sources`)."""
    target = path.resolve()
    for source in (Path(source).resolve() for source in sources):
        if target == source or source in target.parents or (source.is_file() and target in source.parents):
            raise AirsceneError(f"{flag} {path} is where this command reads from ({source}): choose a {flag} outside it")


def replaceable(path: str | Path, flag: str, force: bool = False, ours: Callable[[Path], bool] = lambda path: False) -> Path:
    """`path`, for a command to write a file to, checked before its work: a new name, a file airscene wrote
    there before (as `ours` recognises it), or, with `force`, any file; never a folder. Anything else is a
    one-line error naming the path and the fix."""
    path = as_path(path, flag.lstrip("-"))
    if not isinstance(force, bool):
        raise AirsceneError(f"force is {force!r}: give True or False")
    if path.is_dir():
        raise AirsceneError(f"{flag} {path} is a folder: name a file")
    if (path.exists() or path.is_symlink()) and not force and not (path.is_file() and ours(path)):
        raise AirsceneError(f"{flag} {path} is a file airscene did not write: pass --force to replace it, or choose "
                            f"another {flag}")
    return path


def regular_file(path: str | Path, what: str) -> Path:
    """`path` if it is a regular file (a link to one will do); a one-line error for a missing file, a folder,
    a pipe or a device, which reading would hang on or misread."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        raise AirsceneError(f"{what} {path} does not exist: check the path") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe or a device)"
        raise AirsceneError(f"{what} {path} is {kind}: give a file")
    return path


def read_bytes(path: str | Path, what: str, limit: int = 1 << 30) -> bytes:
    """The bytes of a regular file of at most `limit` bytes."""
    path = regular_file(path, what)
    if path.stat().st_size > limit:
        raise AirsceneError(f"{what} {path} is {path.stat().st_size:,} bytes, more than the {limit:,} airscene reads: "
                            "check that it is the right file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise AirsceneError(f"{what} {path} cannot be read ({error.strerror}): check its permissions") from None


def read_json(path: str | Path, what: str, limit: int = 64 << 20):
    """A JSON file's value, with one-line errors for files that are not JSON text."""
    try:
        return json.loads(read_bytes(path, what, limit).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: also an integer of over 4,300 digits
        raise AirsceneError(f"{what} {path} is not valid JSON text") from None


def as_path(value, what: str) -> Path:
    """A path given as text or a Path, for the API's functions; anything else is a one-line error."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes) or not str(value):
        raise AirsceneError(f"{what} is {value!r}: give a path (text or pathlib.Path)")
    return Path(value)


def lock_directory(directory: Path, what: str) -> int:
    """An exclusive lock on DIRECTORY/.lock, a file airscene made (a link there, symbolic or hard, is someone
    else's and is replaced rather than written through), holding this process's pid; the descriptor, to
    close when done (the lock also goes when the process dies)."""
    path = directory / ".lock"
    if path.is_symlink() or (path.exists() and (not path.is_file() or path.stat().st_nlink > 1)):
        try:
            path.unlink()
        except OSError as error:
            raise AirsceneError(f"cannot replace {path} ({error.strerror}): remove it yourself") from None
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        raise AirsceneError(f"cannot lock {what} {directory} ({error.strerror}): remove {path}, or choose another "
                            "directory") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise AirsceneError(f"{what} {directory} is in use by another airscene process (pid {owner}): wait for it to "
                            "finish, or choose another directory") from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, str(os.getpid()).encode(), 0)
    return descriptor


@contextlib.contextmanager
def locked(directory: Path, what: str):
    """lock_directory for the length of a with-block."""
    descriptor = lock_directory(directory, what)
    try:
        yield
    finally:
        os.close(descriptor)
