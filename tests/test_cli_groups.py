"""``jaxgmm fit FILE --group-by COLUMN``, in-process through ``cli.main(argv)``.

The groups hold 65..128 values, fitted with 4 starts, so the fits share the compiled
call shape of ``tests/test_groups.py`` when both files run in one session."""

import csv
import io

import jax
import numpy as np
import pytest

from conftest import X64
from jaxgmm import Status, cli, fit_groups


def draw(seed, n):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    return np.where(rng.random(n) < 0.3, z, 3.0 + z)


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    groups = {"north": draw(1, 90), "south": draw(2, 120), "3": draw(3, 70), "tiny": draw(4, 3)}
    folder = tmp_path_factory.mktemp("groups")
    path = folder / "table.csv"
    with open(path, "w") as fh:
        fh.write("# per-site measurements\nid,site,value\n")
        rows = [(g, v) for g, x in groups.items() for v in x]
        order = np.random.default_rng(0).permutation(len(rows))  # groups interleaved
        for i in order:
            g, v = rows[i]
            fh.write(f"{i},{g},{float(v)!r}\n")
        fh.write("999,north,NA\n")
    return path, groups


def read_table(text):
    return {row["group"]: row for row in csv.DictReader(io.StringIO(text))}


def test_group_by_writes_one_row_per_group(table_file, capsys):
    path, groups = table_file
    code = cli.main(["fit", str(path), "--group-by", "site", "--column", "value", "--restarts", "4",
                     "--seed", "5"] + (["--float64"] if X64 else []))
    out, err = capsys.readouterr()
    assert code == 1, err  # "tiny" cannot be fitted, so not every group converged
    rows = read_table(out)
    assert set(rows) == set(groups)
    assert rows["tiny"]["status"] == "TOO_FEW" and rows["north"]["status"] == "CONVERGED"
    assert int(rows["north"]["n"]) == 90 and int(rows["south"]["n"]) == 120
    assert "1 missing values dropped" in err and "3 of 4 groups converged" in err and "TOO_FEW: 1" in err
    # The same numbers as fit_groups in Python with the CLI's key and options.
    dt = np.float64 if X64 else np.float32
    ref = fit_groups({g: x.astype(dt) for g, x in groups.items()}, 2, key=jax.random.key(5), n_starts=4)
    for g in ("north", "south", "3"):
        r = ref[g]
        for j in range(2):
            assert float(rows[g][f"mu_{j + 1}"]) == pytest.approx(float(r.params.means[j]), rel=1e-4, abs=1e-4)
        assert rows[g]["status"] == Status(int(r.status)).name


def test_group_by_out_file_and_errors(table_file, tmp_path, capsys):
    path, _ = table_file
    target = tmp_path / "fits.csv"
    argv = ["fit", str(path), "--group-by", "site", "--column", "2", "--restarts", "4", "--out", str(target)] \
        + (["--float64"] if X64 else [])  # the first test's program
    assert cli.main(argv) == 1
    out, _ = capsys.readouterr()
    assert "written to" in out and len(read_table(target.read_text())) == 4
    assert cli.main(argv) == 2  # kept unless --force
    assert "exists" in capsys.readouterr().err
    assert cli.main(["fit", str(path), "--group-by", "place"]) == 2
    assert "--group-by 'place': no such column" in capsys.readouterr().err
    assert cli.main(["fit", str(path), "--group-by", "site"]) == 2  # two other columns: which?
    assert "--column" in capsys.readouterr().err
    assert cli.main(["fit", str(path), "--group-by", "site", "--column", "value", "--kmax", "3"]) == 2
    assert "--kmax is not available with --group-by" in capsys.readouterr().err
    assert cli.main(["fit", str(path), "--column", "value", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--group-by" in capsys.readouterr().err
    headerless = tmp_path / "plain.csv"
    headerless.write_text("a,1.0\nb,2.0\n")
    assert cli.main(["fit", str(headerless), "--group-by", "0", "--column", "1"]) == 2
    assert "no header line" in capsys.readouterr().err
