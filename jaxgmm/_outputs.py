"""Output files of the ``jaxgmm`` command: checked before the work, written atomically.

A study can run for hours, so everything that could stop its output being written is
checked first: the name, the extension, the folder, an existing file (kept unless
``--force``), and the right to write there -- proved by creating the temporary file the
output is later written to, in the same folder, so the final ``os.replace`` is a rename on
one file system: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import Callable, Optional, Sequence


class OutputError(ValueError):
    """An output path that cannot be written; the message names the option."""


class OutputFile:
    """The file ``option`` names, checked now; :meth:`write` fills it, :meth:`discard` gives up."""

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
        if self._tmp is None:
            raise RuntimeError(f"{self.option} {self.path!r} was already written or discarded")
        try:
            fill(self._tmp)
            os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from others
            os.replace(self._tmp, self.target)
        except BaseException:
            self.discard()
            raise
        self._tmp = None

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
