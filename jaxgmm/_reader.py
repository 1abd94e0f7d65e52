"""Reading one column of numbers for ``jaxgmm fit FILE``: streamed, strict, with line numbers.

A text file is read in blocks of bytes (``BLOCK`` at a time), never as a list of lines, so
memory is the float64 result (twice, while the blocks are joined) plus one block: for 10**7
17-digit numbers the traced peak was 2.0x their 80 MB, and the time that of one
``np.fromstring`` over the whole file (6.3 against 5.7-6.7 CPU seconds on the 2-core
shared machine; 10**7 6-digit numbers 2.9 s; the old line-list reader kept about 500 B a
line and took 7.4 s per 10**6 lines). Each block is first parsed by one ``float`` per line
(the fast path); a block with blank, comment or missing lines by a second pass that puts
NaN in their place (1.2 s per 10**6 lines with a missing value every 100); a block with
anything else -- a malformed number, a wrong field count, quotes -- by the line-by-line
parser, which either reads it or raises an error naming the line.

What the reader refuses, because each was once read silently as something else:

* decimal commas (``1,5``): read as two integer columns in a comma-separated layout.
  They are detected and refused unless ``decimal=","`` (read as 1.5) or ``decimal="."``
  (commas separate columns) says which is meant;
* a malformed number on the first line (``1.2.3``): a header is a line of *names*, so a
  line of number-like cells is data, and a bad number in it is an error;
* ``inf`` (or a number too large for float64): a non-finite value is an error, not a
  missing value. Missing values are empty cells, ``NA``, ``nan``, ``null``, ``none`` and
  ``-``; they are dropped and counted.
"""

from __future__ import annotations

import csv
import os
import re
from typing import NamedTuple, Optional

import numpy as np

MISSING = frozenset({b"", b"na", b"nan", b"-nan", b"+nan", b"null", b"none", b"-"})

# Bytes read per block. Big enough that the per-block overhead is noise (about 50,000
# lines of 17-digit numbers), small next to any dataset worth streaming: while a block is
# parsed its lines as bytes objects take about 3x the block.
BLOCK = 1 << 20
# A longer line is no column of numbers (and /dev/zero-like input never ends a line).
MAX_LINE = 1 << 20
# Lines looked at to decide the layout (delimiter, header, decimal mark).
SAMPLE_LINES = 1000

# A cell that starts like a number: a header name never does, so such a cell on the first
# line makes it data (and a malformed one, such as 1.2.3, an error).
_NUMBER_START = re.compile(rb"^[+-]?\.?\d")
# An integer, or digits, a comma and digits: what a decimal-comma number looks like.
_COMMA_DECIMAL = re.compile(rb"^[+-]?\d*,\d+([eE][+-]?\d+)?$")
_INT_OR_COMMA_DECIMAL = re.compile(rb"^[+-]?\d+(,\d+([eE][+-]?\d+)?)?$")
DECIMALS = ("auto", ".", ",")


class ReadError(ValueError):
    """A file that cannot be read as a column of numbers; the message names the line."""


class Layout(NamedTuple):
    """How the data lines of a text file are laid out (decided from its first lines)."""

    delimiter: Optional[bytes]  # None: runs of white space
    width: int                   # fields per data line
    header: Optional[list]       # column names (str), or None
    first_data: int              # 0-based index of the first line after the header
    decimal_comma: bool          # cells are written 1,5 and read as 1.5


def read_column(path: str, column: Optional[str] = None, decimal: str = "auto"):
    """One column of ``path`` as float64 NumPy, and the number of missing cells dropped.

    ``.npy`` files are loaded (memory-mapped, so only the chosen column is copied); any
    other file is text: fields separated by tabs, semicolons, commas or white space (one
    delimiter per file), ``#`` comment lines, an optional header line of column names.
    ``column`` is a 0-based index or a header name; ``decimal`` is ``"auto"`` (refuse
    decimal commas), ``"."`` or ``","``.
    """
    return _read(path, decimal, lambda: _read_npy(path, column), lambda fh: _read_text(fh, path, column, decimal))


def _read(path: str, decimal: str, npy, text):
    """``npy()`` for a ``.npy`` file, else ``text(fh)`` of the open file; the checks
    every reader makes first, and an ``OSError`` as a :class:`ReadError`."""
    if decimal not in DECIMALS:
        raise ReadError(f"--decimal must be one of {', '.join(DECIMALS)}, got {decimal!r}")
    if not os.path.exists(path):
        raise ReadError(f"cannot read {path!r}: no such file")
    if os.path.isdir(path):
        raise ReadError(f"cannot read {path!r}: it is a folder")
    if path.endswith(".npy"):
        return npy()
    try:
        with open(path, "rb") as fh:
            return text(fh)
    except OSError as err:
        raise ReadError(f"cannot read {path!r}: {err.strerror or err}") from None


def read_columns(path: str, columns, decimal: str = "auto"):
    """Several columns of ``path`` as a float64 ``(n, D)`` NumPy array, and the number of
    rows dropped because a cell among them was missing (a row is one observation: it is
    kept whole or not at all, so the columns stay aligned).

    ``columns`` is a sequence of 0-based indices or header names (at least one, no
    repeats).  The layout, the missing cells and what is refused are as in
    :func:`read_column`; text is read line by line (about 1 s per 10**6 lines), since
    the fast one-column path does not apply.
    """
    columns = list(columns)
    if not columns:
        raise ReadError("--columns names no column")
    return _read(path, decimal, lambda: _read_npy_columns(path, columns),
                 lambda fh: _read_text_columns(fh, path, columns, decimal))


def _distinct(indices: list, names: list, path: str) -> list:
    seen = {}
    for j, name in zip(indices, names):
        if j in seen:
            raise ReadError(f"--columns names column {name!r} of {path!r} twice")
        seen[j] = name
    return indices


def _read_npy_columns(path: str, columns: list):
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ReadError(f"cannot read {path!r} as a .npy array: {err}") from None
    if a.ndim != 2:
        raise ReadError(f"{path!r} holds an array of shape {a.shape}; --columns needs a 2-D array "
                        "(one row per observation)")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ReadError(f"{path!r} holds {a.dtype} values, not real numbers")
    idx = _distinct([_as_columns_index(c, None, a.shape[1], path) for c in columns], columns, path)
    a = np.asarray(a[:, idx], np.float64)
    if np.isinf(a).any():
        i, j = (int(v[0]) for v in np.nonzero(np.isinf(a)))
        raise ReadError(f"{path!r} row {i}, column {idx[j]}: {a[i, j]} is not a finite number; "
                        "jaxgmm fit needs finite values (NaN marks a missing value)")
    missing = np.isnan(a).any(axis=1)
    n_missing = int(missing.sum())
    return (a[~missing] if n_missing else a), n_missing


def _as_columns_index(column, header, width: int, path: str) -> int:
    try:
        return column_index(str(column), header, width, path)
    except ReadError as err:  # its message names --column
        raise ReadError(str(err).replace("--column", "--columns", 1)) from None


def _read_text_columns(fh, path: str, columns: list, decimal: str):
    blocks = _blocks(fh, path)
    pending = list(_first_blocks(blocks))
    layout = _layout(pending, path, decimal)
    idx = _distinct([_as_columns_index(c, layout.header, layout.width, path) for c in columns], columns, path)
    rows, n_missing = [], 0
    for first, block in _chain(pending, blocks):
        for offset, raw in enumerate(block.split(b"\n")):
            lineno = first + offset  # 1-based; the first first_data lines precede the data
            text = raw.strip()
            if lineno <= layout.first_data or not text or text.startswith(b"#"):
                continue
            cells = _split(text, layout.delimiter)
            if len(cells) != layout.width:
                raise ReadError(_width_message(path, lineno, len(cells), layout, text))
            values = [_value(cells[j], lineno, layout, path) for j in idx]
            if any(v is None for v in values):
                n_missing += 1
            else:
                rows.append(values)
    if not rows and n_missing == 0:
        raise ReadError(f"{path!r} holds no numbers")
    return np.asarray(rows, np.float64).reshape(len(rows), len(idx)), n_missing


# --------------------------------------------------------------------------- #
# .npy
# --------------------------------------------------------------------------- #
def _read_npy(path: str, column: Optional[str]):
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ReadError(f"cannot read {path!r} as a .npy array: {err}") from None
    if a.ndim == 2 and (a.shape[1] == 1 or column is not None):
        j = column_index(column, None, a.shape[1], path) if a.shape[1] > 1 else 0
        a = a[:, j]
    if a.ndim != 1:
        raise ReadError(f"{path!r} holds an array of shape {a.shape}; need one column "
                        "(shape (n,) or (n, 1), or choose one with --column)")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ReadError(f"{path!r} holds {a.dtype} values, not real numbers")
    a = np.asarray(a, np.float64)  # the one copy: float64 of the chosen column
    infinite = np.flatnonzero(np.isinf(a))
    if infinite.size:
        i = int(infinite[0])
        raise ReadError(f"{path!r} element {i}: {a[i]} is not a finite number "
                        f"({infinite.size} infinite values); jaxgmm fit needs finite values "
                        "(NaN marks a missing value)")
    missing = np.isnan(a)
    n_missing = int(missing.sum())
    return (a[~missing] if n_missing else a), n_missing


# --------------------------------------------------------------------------- #
# Text: blocks of lines
# --------------------------------------------------------------------------- #
def _blocks(fh, path: str):
    """Yield ``(first_line_number, text)``: whole lines, joined by ``\n``, no final one."""
    lineno, rest, first = 1, b"", True
    while True:
        data = fh.read(BLOCK)
        if first and data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark
            data = data[3:]
        first = False
        if not data:
            break
        if b"\0" in data:
            text = rest + data
            line = lineno + text.count(b"\n", 0, text.index(b"\0"))
            raise ReadError(f"{path!r} line {line} holds a NUL byte: binary data (or UTF-16 "
                            "text), not a text file of numbers")
        cut = data.rfind(b"\n")
        if cut < 0:
            rest += data
            if len(rest) > MAX_LINE:
                raise ReadError(f"{path!r} line {lineno} is longer than {MAX_LINE} bytes: "
                                "not a column of numbers")
            continue
        text, rest = rest + data[:cut], data[cut + 1:]
        yield lineno, text
        lineno += text.count(b"\n") + 1
    if rest:
        yield lineno, rest


def _read_text(fh, path: str, column: Optional[str], decimal: str):
    blocks = _blocks(fh, path)
    pending = list(_first_blocks(blocks))
    layout = _layout(pending, path, decimal)
    j = column_index(column, layout.header, layout.width, path)
    parts, n_missing = [], 0
    skip = layout.first_data
    for lineno, text in _chain(pending, blocks):
        if skip:  # the header (and anything before it) sits in the first blocks
            lineno, text, skip = _drop_lines(lineno, text, skip)
            if text is None:
                continue
        values, missing = _parse_block(text, lineno, layout, j, path)
        parts.append(values)
        n_missing += missing
    data = np.concatenate(parts) if parts else np.zeros(0)
    if data.size == 0 and n_missing == 0:
        raise ReadError(f"{path!r} holds no numbers")
    return data, n_missing


def _drop_lines(lineno: int, text: bytes, count: int):
    """Drop up to ``count`` first lines of ``text``: (line number, rest or None, still to drop)."""
    at = -1
    for done in range(count):
        at = text.find(b"\n", at + 1)
        if at < 0:
            return lineno + done + 1, None, count - done - 1
    return lineno + count, text[at + 1:], 0


def _first_blocks(blocks):
    """The first blocks, until they hold ``SAMPLE_LINES`` lines (or the file ends)."""
    count = 0
    for item in blocks:
        yield item
        count += item[1].count(b"\n") + 1
        if count >= SAMPLE_LINES:
            return


def _chain(pending, blocks):
    yield from pending
    yield from blocks


# --------------------------------------------------------------------------- #
# The layout, from the first lines
# --------------------------------------------------------------------------- #
def _layout(pending, path: str, decimal: str) -> Layout:
    sample = []  # (0-based index, stripped line) of non-blank, non-comment lines
    index = 0
    for _, block in pending:
        for raw in block.split(b"\n"):
            text = raw.strip()
            if text and not text.startswith(b"#"):
                sample.append((index, text))
            index += 1
            if len(sample) >= SAMPLE_LINES:
                break
    if not sample:
        raise ReadError(f"{path!r} holds no numbers")
    delimiter = _delimiter([t for _, t in sample], decimal)
    first_index, first = sample[0]
    cells = _split(first, delimiter)
    header = cells if _is_header(cells) else None
    data = sample[1:] if header is not None else sample
    if header is not None and not data:
        raise ReadError(f"{path!r} holds a header line and no numbers")
    width = len(header) if header is not None else len(_split(data[0][1], delimiter))
    if decimal == "auto":
        _refuse_decimal_commas(data, delimiter, header, path)
    names = None if header is None else [c.decode("utf-8", "replace") for c in header]
    return Layout(delimiter, width, names, first_index + 1 if header is not None else 0,
                  decimal == ",")


def _delimiter(lines, decimal: str) -> Optional[bytes]:
    """One delimiter for the file: tab, then semicolon, then comma, else white space."""
    for d in (b"\t", b";") + (() if decimal == "," else (b",",)):
        if any(d in t for t in lines):
            return d
    return None


def _split(text: bytes, delimiter: Optional[bytes]) -> list:
    if delimiter is None:
        return text.split()
    if b'"' in text:  # "1,5" is one quoted cell, not the two cells 1 and 5
        row = next(csv.reader([text.decode("utf-8", "replace")], delimiter=delimiter.decode()))
        return [c.strip().encode() for c in row]
    return [c.strip() for c in text.split(delimiter)]


def _is_number(cell: bytes) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_header(cells) -> bool:
    """A line of names: no cell is or starts like a number, and one at least is a name."""
    names = [c for c in cells if c.lower() not in MISSING]
    return bool(names) and not any(_is_number(c) or _NUMBER_START.match(c) for c in names)


def _refuse_decimal_commas(data, delimiter, header, path: str) -> None:
    """Stop where the layout could be numbers written with a decimal comma."""
    if delimiter in (b"\t", b";", None):
        for index, text in data:
            for cell in _split(text, delimiter):
                if _COMMA_DECIMAL.match(cell):
                    raise ReadError(_decimal_comma_message(path, index + 1, cell, False))
        return
    # Comma-separated: every line an integer, or digits,digits, is 1,5 or two integer
    # columns alike; a header of two names settles it as columns.
    if header is not None and len(header) != 1:
        return
    if all(_INT_OR_COMMA_DECIMAL.match(t) or t.lower() in MISSING for _, t in data) \
            and any(b"," in t for _, t in data):
        index, text = next((i, t) for i, t in data if b"," in t)
        raise ReadError(_decimal_comma_message(path, index + 1, text, True))


def _decimal_comma_message(path: str, lineno: int, cell: bytes, ambiguous: bool) -> str:
    shown = cell.decode("utf-8", "replace")
    columns = " or --decimal . if the commas separate columns" if ambiguous else ""
    return (f"{path!r} line {lineno}: {shown!r} looks like a number with a decimal comma; "
            f"pass --decimal , to read it as {shown.replace(',', '.', 1)}{columns}")


# --------------------------------------------------------------------------- #
# Parsing a block
# --------------------------------------------------------------------------- #
def _parse_block(block: bytes, lineno: int, layout: Layout, j: int, path: str):
    """The column's finite values in the lines of ``block`` and the number of missing cells."""
    parsed = _fast(block, layout, j)
    if parsed is None:
        return _slow(block.split(b"\n"), lineno, layout, j, path)
    values, n_blank = parsed  # one value per line: NaN for blank, comment and missing lines
    infinite = np.isinf(values)
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        line = block.split(b"\n")[i]
        raise ReadError(_not_finite_message(path, lineno + i, _cell(line, layout, j)))
    nan = np.isnan(values)
    n_nan = int(nan.sum())
    return (values[~nan] if n_nan else values), n_nan - n_blank


def _fast(block: bytes, layout: Layout, j: int):
    """``(values, blank lines)`` with one value per line, or None for the line-by-line parser.

    First one ``float`` per line over the whole block; where that fails, a second pass that
    also places NaN for blank, comment and missing lines (about 5x faster than the
    line-by-line parser, which is left for blocks with an error to name).
    """
    # float() accepts 1_000; a decimal-comma file must not hold a '.' (a thousands mark).
    if b"_" in block or (layout.decimal_comma and b"." in block):
        return None
    lines = (block.replace(b",", b".") if layout.decimal_comma else block).split(b"\n")
    if b"#" not in block:  # a comment line could hold a number in column j
        try:
            return _floats(lines, layout, j), 0
        except ValueError:
            pass
    return _tolerant(lines, layout, j)


def _floats(lines, layout: Layout, j: int):
    if layout.width == 1:
        return np.fromiter(map(float, lines), np.float64, count=len(lines))
    cells = [_split_fast(t, layout.delimiter) for t in lines]
    if any(len(c) != layout.width for c in cells):
        raise ValueError("fields")
    return np.fromiter((float(c[j]) for c in cells), np.float64, count=len(cells))


def _tolerant(lines, layout: Layout, j: int):
    values, blank, nan = [], 0, float("nan")
    for raw in lines:
        text = raw.strip()
        if not text or text.startswith(b"#"):
            blank += 1
            values.append(nan)
            continue
        if layout.width == 1:
            cell = text
        else:
            cells = _split_fast(text, layout.delimiter)
            if len(cells) != layout.width:
                return None
            cell = cells[j]
        try:
            values.append(float(cell))
        except ValueError:
            if cell.strip().lower() not in MISSING:
                return None  # an error: the line-by-line parser names it
            values.append(nan)
    return np.asarray(values, np.float64), blank


def _split_fast(text: bytes, delimiter: Optional[bytes]) -> list:
    return text.split() if delimiter is None else text.split(delimiter)


def _slow(lines, lineno: int, layout: Layout, j: int, path: str):
    values, n_missing = [], 0
    for i, raw in enumerate(lines):
        text = raw.strip()
        if not text or text.startswith(b"#"):
            continue
        cells = _split(text, layout.delimiter)
        if len(cells) != layout.width:
            raise ReadError(_width_message(path, lineno + i, len(cells), layout, text))
        v = _value(cells[j], lineno + i, layout, path)
        if v is None:
            n_missing += 1
        else:
            values.append(v)
    return np.asarray(values, np.float64), n_missing


def _value(cell: bytes, lineno: int, layout: Layout, path: str) -> Optional[float]:
    """The cell's finite value, None for a missing cell, or a ReadError naming the line."""
    if cell.lower() in MISSING:
        return None
    text = cell
    if layout.decimal_comma:
        if b"." in cell:
            raise ReadError(f"{path!r} line {lineno}: {_show(cell)} holds a '.' but --decimal , "
                            "was given (a thousands mark?); write the number as 1234,5")
        text = cell.replace(b",", b".")
    v = None if b"_" in text else _float_or_none(text)
    if v is None:
        hint = ("; a decimal comma? pass --decimal ," if _COMMA_DECIMAL.match(cell)
                and not layout.decimal_comma else "")
        raise ReadError(f"{path!r} line {lineno}: {_show(cell)} is not a number{hint}")
    if not np.isfinite(v):
        raise ReadError(_not_finite_message(path, lineno, cell))
    return v


def _float_or_none(text: bytes) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def _cell(raw: bytes, layout: Layout, j: int) -> bytes:
    return _split(raw.strip(), layout.delimiter)[j]


def _show(cell: bytes) -> str:
    return repr(cell.decode("utf-8", "replace"))


def _not_finite_message(path: str, lineno: int, cell: bytes) -> str:
    return (f"{path!r} line {lineno}: {_show(cell)} is not a finite number (it reads as "
            "infinite); jaxgmm fit needs finite values: remove it, or write NA for a missing value")


def _width_message(path: str, lineno: int, found: int, layout: Layout, text: bytes) -> str:
    hint = ""
    if layout.delimiter == b"," and _INT_OR_COMMA_DECIMAL.match(text):
        hint = " (decimal commas? pass --decimal ,)"
    return f"{path!r} line {lineno}: {found} fields, expected {layout.width}{hint}"


def column_index(column: Optional[str], header, width: int, path: str) -> int:
    """The 0-based index of ``column`` (a header name or an index) among ``width`` columns."""
    if column is None:
        if width != 1:
            names = f" ({', '.join(header)})" if header else ""
            raise ReadError(f"{path!r} has {width} columns{names}; choose one with --column")
        return 0
    if header is not None and column in header:
        return header.index(column)
    try:
        j = int(column)
    except ValueError:
        raise ReadError(f"--column {column!r}: no such column in {path!r}"
                        + (f" (columns: {', '.join(header)})" if header else "")) from None
    if not 0 <= j < width:
        raise ReadError(f"--column {j}: {path!r} has columns 0..{width - 1}")
    return j
