"""Files that belong to the operator alone: the run locks and the trust store.

They live in a directory only the operator can write. A directory another user owns, or one that
group or others may write to, is refused, never repaired: whoever can write there can plant a
symlink and make us write through it (as root, over any file on the machine) or swap the trust
store. Every file is opened relative to the checked directory's descriptor with `O_NOFOLLOW`, so
a name cannot turn into a symlink between the check and the open.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE_DIR_MODE = 0o700  # only the owner may list, enter or write the directory
PRIVATE_FILE_MODE = 0o600  # only the owner may read or write the file
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH  # whoever has these bits can plant names
# Never through a symlink; never inherited by the commands we start; never blocking on a FIFO
# someone left in place of a file (the type is checked right after the open).
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafeFileError(Exception):
    """One of our own files or directories could be controlled by someone else: refused, and why."""


@contextmanager
def private_dir(path: Path) -> Iterator[int]:
    """A descriptor of `path`, created 0700 if missing, once it is checked to be ours alone."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file, or a symlink to nowhere
        raise UnsafeFileError(f"{path} exists and is not a directory; refusing to use it") from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFileError(f"{path} is a symbolic link or not a directory; refusing to use it") from exc
        raise
    try:
        _check_owner(fd, path)
        yield fd
    finally:
        os.close(fd)


def open_private(dir_fd: int, directory: Path, name: str, flags: int) -> int:
    """Open `name` in a checked private directory: never through a symlink, and only a plain file of ours."""
    path = directory / name
    try:
        fd = os.open(name, flags | _OPEN_FLAGS, PRIVATE_FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"{path} is a symbolic link; refusing to follow it "
                                  f"(remove it if you did not put it there)") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise UnsafeFileError(f"{path} is not a plain file with one name; refusing to use it")
        _check_owner(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def replace_private(dir_fd: int, name: str, data: bytes) -> None:
    """Make `name` hold `data`, whole or not at all: a fresh 0600 file, fsynced, renamed over it."""
    temporary = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, PRIVATE_FILE_MODE,
                 dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dir_fd)  # the rename itself survives a crash


def _check_owner(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise UnsafeFileError(f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); "
                              f"refusing to use it")
    if info.st_mode & _WRITABLE_BY_OTHERS:
        raise UnsafeFileError(f"{path} may be written by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                              f"refusing to use it until it is private: chmod go-w {path}")
