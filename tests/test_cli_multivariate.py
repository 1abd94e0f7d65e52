"""``jaxgmm fit FILE --columns a,b``: reading aligned columns and the multivariate fit.

The fit runs in-process (``cli.main``) on one small file, so its programs are
compiled once for all the tests that print a fit.
"""

import re

import jax
import numpy as np
import pytest

import jaxgmm
from jaxgmm import _reader, cli
from conftest import DTYPE, rtol_for


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def two_clusters(seed=0, n=300):
    rng = np.random.default_rng(seed)
    a = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]], n // 2)
    b = rng.multivariate_normal([5.0, 2.0], [[0.5, 0.0], [0.0, 2.0]], n - n // 2)
    return np.concatenate([a, b])


# ------------------------------------------------------------------ reading


def test_rows_with_a_missing_cell_are_dropped_whole(tmp_path):
    p = write(tmp_path, "d.csv", "a,b,label\n1,2,x\n3,NA,y\n,6,z\n7,8,w\n")
    data, dropped = _reader.read_columns(p, ["a", "b"])
    np.testing.assert_array_equal(data, [[1.0, 2.0], [7.0, 8.0]])
    assert dropped == 2
    # Order and indices as given; a column outside the chosen ones may hold text.
    data, _ = _reader.read_columns(p, ["1", "a"])
    np.testing.assert_array_equal(data, [[2.0, 1.0], [8.0, 7.0]])


def test_npy_columns_and_missing_rows(tmp_path):
    a = np.array([[1.0, 2.0, 3.0], [np.nan, 5.0, 6.0], [7.0, 8.0, 9.0]])
    path = str(tmp_path / "a.npy")
    np.save(path, a)
    data, dropped = _reader.read_columns(path, ["2", "0"])
    np.testing.assert_array_equal(data, [[3.0, 1.0], [9.0, 7.0]])
    assert dropped == 1


@pytest.mark.parametrize("columns, message", [
    (["a", "a"], "names column 'a'"),
    (["a", "q"], "--columns 'q': no such column"),
    (["a", "label"], "'x' is not a number"),
    (["0", "5"], "--columns 5"),
])
def test_reading_errors_name_the_problem(tmp_path, columns, message):
    p = write(tmp_path, "d.csv", "a,b,label\n1,2,x\n3,4,y\n")
    with pytest.raises(_reader.ReadError, match=re.escape(message)):
        _reader.read_columns(p, columns)


def test_npy_of_one_dimension_is_refused(tmp_path):
    path = str(tmp_path / "a.npy")
    np.save(path, np.arange(4.0))
    with pytest.raises(_reader.ReadError, match="2-D array"):
        _reader.read_columns(path, ["0", "1"])


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("extra, message", [
    (["--means", "0,1"], "--means is not available with --columns"),
    (["--equal-scales"], "--equal-scales is not available"),
    (["--lrt"], "--lrt is not available"),
    (["--bootstrap", "10"], "--bootstrap is not available"),
    (["--column", "a"], "--column is not available"),
    (["--init", "quantile"], "k-means++ only"),
])
def test_univariate_options_are_refused(tmp_path, capsys, extra, message):
    p = write(tmp_path, "d.csv", "a,b\n1,2\n3,4\n5,7\n")
    assert cli.main(["fit", p, "--columns", "a,b", *extra]) == 2
    assert message in capsys.readouterr().err


def test_one_column_and_covariance_type_without_columns_are_refused(tmp_path, capsys):
    p = write(tmp_path, "d.csv", "a,b\n1,2\n3,4\n5,7\n")
    assert cli.main(["fit", p, "--columns", "a"]) == 2
    assert "two or more" in capsys.readouterr().err
    assert cli.main(["fit", p, "--column", "a", "--covariance-type", "diag"]) == 2
    assert "--covariance-type applies to multivariate fits" in capsys.readouterr().err


def test_too_few_rows_for_the_model_is_one_line(tmp_path, capsys):
    p = write(tmp_path, "d.csv", "a,b\n1,2\n3,4\n5,7\n2,2\n")
    assert cli.main(["fit", p, "--columns", "a,b", "-k", "2"]) == 2
    assert "fewer than the 11 free parameters" in capsys.readouterr().err


# ------------------------------------------------------------------ the fit


@pytest.fixture(scope="module")
def cluster_file(tmp_path_factory):
    data = two_clusters()
    path = tmp_path_factory.mktemp("mv") / "clusters.csv"
    np.savetxt(path, data, delimiter=",", header="x,y", comments="", fmt="%.17g")
    return str(path), data


def numbers(line):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", line)]


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_prints_the_fit_that_fit_and_standard_errors_give(cluster_file, capsys, ctype):
    path, data = cluster_file
    assert cli.main(["fit", path, "--columns", "x,y", "-k", "2", "--covariance-type", ctype,
                     "--restarts", "4"]) == 0
    out = capsys.readouterr().out
    # The same computation through the library: starts from the same key.
    x = jax.numpy.asarray(data, DTYPE)
    starts = jaxgmm.init_params(jax.random.key(0), x, 2, n_starts=4, covariance_type=ctype)
    res = jaxgmm.best_of(jaxgmm.fit(x, starts, covariance_type=ctype))
    se = jaxgmm.standard_errors(x, res)
    assert f"n = {len(data)} rows of columns x, y (D = 2)" in out
    ll_line = next(line for line in out.splitlines() if line.startswith("log-likelihood"))
    ll, p, aic, bic = numbers(ll_line)
    # Printed with 4 decimals: half a unit of the last one, plus the float type's rounding.
    np.testing.assert_allclose(ll, float(res.loglik), rtol=rtol_for(len(data)), atol=0.5e-4)
    assert p == jaxgmm.n_parameters(2, covariance_type=ctype, n_features=2)
    np.testing.assert_allclose(bic, p * np.log(len(data)) - 2 * ll, rtol=1e-6)
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()
            if line.startswith(("weight", "mean(", "var(", "cov("))}
    # value (SE) per component, printed to 6 and 3 significant digits.
    got = numbers(rows["mean(y)"])
    want = [float(res.params.means[0, 1]), float(se.means[0, 1]), float(res.params.means[1, 1]),
            float(se.means[1, 1])]
    np.testing.assert_allclose(got, want, rtol=5e-3)
    got = numbers(rows["var(x)"])
    want = [float(res.params.covariances[0, 0, 0]), float(se.covariances[0, 0, 0]),
            float(res.params.covariances[1, 0, 0]), float(se.covariances[1, 0, 0])]
    np.testing.assert_allclose(got, want, rtol=5e-3)
    assert ("cov(y,x)" in rows) == (ctype == "full")


def test_kmax_chooses_two_clusters_by_bic(cluster_file, capsys):
    path, _ = cluster_file
    assert cli.main(["fit", path, "--columns", "x,y", "--kmax", "3", "--restarts", "4"]) == 0
    out = capsys.readouterr().out
    assert "smallest BIC: K = 2" in out
