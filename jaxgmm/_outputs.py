"""Output files of the ``jaxgmm`` command: checked before the work, written atomically.

A study can run for hours, so everything that could stop its output being written is
checked first: the name, the extension, the folder, an existing file (kept unless
``--force``), and the right to write there -- proved by creating the temporary file the
output is later written to, in the same folder, so the final ``os.replace`` is a rename on
one file system: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import stat
import tempfile
import threading
from typing import Callable, Optional, Sequence


class OutputError(ValueError):
    """An output path that cannot be written; the message names the option."""


class OutputFile:
    """The file ``option`` names, checked now; :meth:`write` (or :meth:`open` and
    :meth:`commit`) fills it, :meth:`discard` gives up."""

    def __init__(self, option: str, path: str, extensions: Sequence[str], force: bool = False):
        self.option, self.path = option, path
        self.target, self.extension = _checked_target(option, path, extensions, force)
        folder, name = os.path.split(self.target)
        try:  # proves the folder is writable; the output is written here at the end
            fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".part{self.extension}",
                                             dir=folder)
        except OSError as err:
            raise OutputError(f"{option}: cannot write in folder {folder!r}: "
                              f"{err.strerror or err}") from None
        os.close(fd)

    def write(self, fill: Callable[[str], None]) -> None:
        """``fill(temporary_path)`` writes the content; then it replaces the target at once."""
        self._check_open()
        try:
            fill(self._tmp)
        except BaseException:
            self.discard()
            raise
        self.commit()

    def open(self, mode: str = "w", **kwargs):
        """The temporary file, opened: for content written piece by piece, then :meth:`commit`."""
        self._check_open()
        return open(self._tmp, mode, **kwargs)

    def commit(self) -> None:
        """Put the temporary file in the target's place (one rename)."""
        self._check_open()
        try:
            os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from others
            os.replace(self._tmp, self.target)
        except BaseException:
            self.discard()
            raise
        self._tmp = None

    def _check_open(self) -> None:
        if self._tmp is None:
            raise RuntimeError(f"{self.option} {self.path!r} was already written or discarded")

    def discard(self) -> None:
        """Remove the temporary file (no-op after :meth:`write`)."""
        if self._tmp is not None:
            try:
                os.remove(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None


def _checked_target(option: str, path: Optional[str], extensions, force: bool):
    """The real path to write and its extension (lower case), or an OutputError."""
    if not path or not path.strip():
        raise OutputError(f"{option}: empty file name; give a file such as results{extensions[0]}")
    if path.endswith(os.sep) or os.path.isdir(path):
        raise OutputError(f"{option}: {path!r} is a folder; give a file name, e.g. "
                          f"{os.path.join(path, 'results' + extensions[0])}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in extensions:
        raise OutputError(f"{option}: {path!r} must end in {_or_list(extensions)}, "
                          f"got {ext or 'no extension'}")
    target = os.path.realpath(path)  # through a link: replace the file it points to
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise OutputError(f"{option}: folder {os.path.dirname(os.path.abspath(path))!r} does not exist")
    if os.path.lexists(target):
        if not stat.S_ISREG(os.stat(target).st_mode):
            raise OutputError(f"{option}: {path!r} exists and is not a regular file")
        if not force:
            raise OutputError(f"{option}: {path!r} exists; pass --force to overwrite it")
    return target, ext


def _or_list(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask


class RowStream:
    """CSV rows written to an :class:`OutputFile` chunk by chunk, as a study finishes them.

    A chunk's rows are written with Ctrl-C held back until they are all in the file, so an
    interrupted study leaves whole chunks behind; ``rows`` counts what the file holds.
    """

    def __init__(self, output: OutputFile, header: Sequence[str]):
        self.output, self.rows = output, 0
        self._fh = output.open("w", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(header)

    def add(self, rows) -> None:
        rows = list(rows)
        with _sigint_held():
            self._writer.writerows(rows)
            self._fh.flush()
            self.rows += len(rows)

    def commit(self) -> None:
        self._fh.close()
        self.output.commit()

    def discard(self) -> None:
        self._fh.close()
        self.output.discard()


@contextlib.contextmanager
def _sigint_held():
    """Hold a Ctrl-C back until the block is done, then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers; Python runs them there
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt
