"""``jaxgmm fit FILE``'s reader: no file is read silently as something else, and it streams."""

import tracemalloc

import numpy as np
import pytest

from jaxgmm import _reader, cli


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(p)


def read_error(path, *args, **kwargs):
    with pytest.raises(cli.CLIError) as info:
        cli.read_column(path, *args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- #
# Decimal commas
# --------------------------------------------------------------------------- #
def test_comma_decimal_file_is_refused_with_the_reason(tmp_path):
    p = write(tmp_path, "de.csv", "1,5\n2,25\n-3,75\n4\n")
    msg = read_error(p)
    assert "decimal comma" in msg and "line 1" in msg and "--decimal ," in msg
    # The old advice, --column 0, must not read the integer parts.
    assert "decimal comma" in read_error(p, "0")


def test_comma_decimal_file_read_with_the_option(tmp_path):
    p = write(tmp_path, "de.csv", "1,5\n2,25\nNA\n-3,75\n4\n")
    x, dropped = cli.read_column(p, decimal=",")
    np.testing.assert_array_equal(x, [1.5, 2.25, -3.75, 4.0])
    assert dropped == 1


def test_two_integer_columns_read_as_columns_when_asked(tmp_path):
    p = write(tmp_path, "ints.csv", "1,5\n2,25\n")
    np.testing.assert_array_equal(cli.read_column(p, "1", decimal=".")[0], [5.0, 25.0])


def test_semicolon_file_with_decimal_commas(tmp_path):
    p = write(tmp_path, "de2.csv", "a;b\n1,5;7\n2,5;8\n")
    assert "decimal comma" in read_error(p, "a")
    np.testing.assert_array_equal(cli.read_column(p, "a", decimal=",")[0], [1.5, 2.5])


def test_decimal_comma_mode_refuses_a_dot(tmp_path):
    p = write(tmp_path, "de3.txt", "1,5\n1.500\n")
    msg = read_error(p, decimal=",")
    assert "line 2" in msg and "'1.500'" in msg


def test_decimal_comma_after_the_sampled_lines_names_the_line(tmp_path):
    lines = ["1.5"] * (_reader.SAMPLE_LINES + 5) + ["2,5"]
    p = write(tmp_path, "late.txt", "\n".join(lines) + "\n")
    msg = read_error(p)
    assert f"line {len(lines)}" in msg and "--decimal ," in msg


def test_quoted_comma_decimals_are_one_cell(tmp_path):
    p = write(tmp_path, "q.csv", '"x","y"\n"1,5","2"\n"3,5","4"\n')
    assert "decimal comma" in read_error(p, "x")
    np.testing.assert_array_equal(cli.read_column(p, "y")[0], [2.0, 4.0])


# --------------------------------------------------------------------------- #
# Headers and malformed numbers
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("first", ["1.2.3", "1e5e", "12a", "+.5.5"])
def test_malformed_first_line_is_an_error_not_a_header(tmp_path, first):
    p = write(tmp_path, "typo.txt", f"{first}\n2.0\n3.0\n")
    msg = read_error(p)
    assert "line 1" in msg and repr(first) in msg and "not a number" in msg


def test_malformed_number_later_names_its_line(tmp_path):
    p = write(tmp_path, "typo2.txt", "# c\nvalue\n1\n2\n3..5\n")
    msg = read_error(p)
    assert "line 5" in msg and "'3..5'" in msg


@pytest.mark.parametrize("text, column, values", [
    ("\ufeff# comment\n\nid,value\n0,1.5\n1,NA\n2,2.5\n", "value", [1.5, 2.5]),  # a header
    ("a,b\n1,2\n#9,9\n\n3,NA\n4,5\n", "b", [2.0, 5.0]),  # a comment holding numbers is no data
])
def test_headers_comments_and_missing_cells(tmp_path, text, column, values):
    x, dropped = cli.read_column(write(tmp_path, "h.csv", text), column)
    np.testing.assert_array_equal(x, values)
    assert dropped == 1


def test_mixed_first_line_is_data(tmp_path):
    p = write(tmp_path, "m.csv", "id,1.5\n1,2\n")
    msg = read_error(p, "0")
    assert "line 1" in msg and "'id'" in msg


# --------------------------------------------------------------------------- #
# Non-finite values
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity", "1e400"])
def test_infinite_values_are_errors_not_missing(tmp_path, cell):
    p = write(tmp_path, "inf.txt", f"1\n2\n{cell}\n3\n")
    msg = read_error(p)
    assert "line 3" in msg and "not a finite number" in msg and repr(cell) in msg


def test_infinite_value_in_a_slow_block_names_its_line(tmp_path):
    p = write(tmp_path, "inf2.csv", "a,b\n1,NA\n2,inf\n")
    msg = read_error(p, "b")
    assert "line 3" in msg and "not a finite number" in msg


def test_npy_inf_is_an_error_nan_is_missing(tmp_path):
    np.save(tmp_path / "a.npy", np.array([1.0, np.nan, 2.0, 3.0]))
    x, dropped = cli.read_column(str(tmp_path / "a.npy"))
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    assert dropped == 1
    np.save(tmp_path / "b.npy", np.array([1.0, np.inf, 2.0]))
    msg = read_error(str(tmp_path / "b.npy"))
    assert "element 1" in msg and "not a finite number" in msg


# --------------------------------------------------------------------------- #
# Binary input and other malformed files
# --------------------------------------------------------------------------- #
def test_binary_file_is_refused_at_once(tmp_path):
    p = write(tmp_path, "zeros.bin", b"\0" * 100_000)
    assert "NUL byte" in read_error(p)


def test_dev_zero_is_refused_without_reading_it_all():
    msg = read_error("/dev/zero")
    assert "NUL byte" in msg and "line 1" in msg


def test_endless_line_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(_reader, "MAX_LINE", 1000)
    monkeypatch.setattr(_reader, "BLOCK", 256)
    p = write(tmp_path, "long.txt", "1" * 5000)
    assert "longer than" in read_error(p)


@pytest.mark.parametrize("text, message", [
    ("1\n2 3\n", "line 2: 2 fields, expected 1"),
    ("a,b\n1,2\n3\n", "line 3: 1 fields, expected 2"),
    ("1_000\n", "'1_000' is not a number"),
    ("", "holds no numbers"),
    ("# only a comment\n\n", "holds no numbers"),
    ("value\n", "header line and no numbers"),
])
def test_malformed_files(tmp_path, text, message):
    p = write(tmp_path, "bad.txt", text)
    assert message in read_error(p, "0" if text.startswith("a,b") else None)


# --------------------------------------------------------------------------- #
# Streaming: the result is the data, memory is bounded, line numbers survive blocks
# --------------------------------------------------------------------------- #
def test_blocks_give_exactly_the_numbers_and_the_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(_reader, "BLOCK", 97)  # many blocks, cut mid-line
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000) * 10.0 ** rng.integers(-30, 30, 2000)
    lines = [repr(float(v)) for v in x]
    lines[700] = "NA"
    lines[1500] = ""
    p = write(tmp_path, "many.txt", "\r\n".join(lines) + "\r\n")
    got, dropped = cli.read_column(p)
    np.testing.assert_array_equal(got, np.delete(x, [700, 1500]))
    assert dropped == 1
    lines[1800] = "oops"
    p = write(tmp_path, "many_bad.txt", "\n".join(lines) + "\n")
    assert "line 1801: 'oops'" in read_error(p)


def test_columns_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(_reader, "BLOCK", 64)
    rows = [f"{i}\t{i / 8}" for i in range(500)]
    p = write(tmp_path, "cols.tsv", "i\tv\n" + "\n".join(rows))  # no final newline
    np.testing.assert_array_equal(cli.read_column(p, "v")[0], np.arange(500) / 8)


def test_reading_keeps_about_two_copies_of_the_data(tmp_path):
    # 200,000 numbers (1.6 MB as float64); the old reader kept ~480 B per line.
    n = 200_000
    x = np.arange(n) / 7.0
    p = tmp_path / "big.txt"
    with open(p, "w") as fh:
        fh.write("\n".join(map(repr, x.tolist())))
    tracemalloc.start()
    try:
        got, _ = cli.read_column(str(p))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, x)
    # Two float64 copies while the blocks are joined, plus one block as bytes and as lines
    # (about 5 blocks in all): under 10 MB here, against 96 MB for the old reader.
    assert peak < 2 * x.nbytes + 6 * _reader.BLOCK, peak


def test_line_numbers_survive_blank_and_missing_lines(tmp_path):
    p = write(tmp_path, "gaps.txt", "1\n\nNA\n# note\n2\ninf\n")
    assert "line 6" in read_error(p)
    p = write(tmp_path, "gaps2.csv", "a;b\n1;2\n\n;\n3;-inf\n")
    assert "line 5: '-inf'" in read_error(p, "b")
