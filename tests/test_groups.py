"""``jaxgmm.fit_groups``: per-group fits equal lone fits, do not depend on batching, survive
bad groups, take any hashable label, and compile a few programs for many sizes.

Cost: the default-suite tests share the call shape of groups of 65..128 observations
(one bucket, 128 rows, K = 2, 4 starts); the compilation test adds one more (bucket
256); the lone fits one (n = 100). Larger statistical checks are ``slow``.
"""

import inspect
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from conftest import DTYPE, backend_compiles, rtol_for
from jaxgmm import MixtureParams, Status
from jaxgmm import _groups
from jaxgmm._groups import group_key

K, STARTS = 2, 4
TOL = jaxgmm.default_tol(DTYPE)
ACC = inspect.signature(jaxgmm.fit_groups).parameters["accelerate"].default  # the lone fits use it too
KEY = jax.random.key(7)


def draw(seed, n):
    """n values of 0.3 N(0, 1) + 0.7 N(3, 1), float64 NumPy (cast by the library)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    return np.where(rng.random(n) < 0.3, z, 3.0 + z)


def groups_of(sizes, seed=0):
    return {f"g{i}": draw(seed * 1000 + i, n) for i, n in enumerate(sizes)}


def fit_groups(data, **kw):
    return jaxgmm.fit_groups(data, K, key=KEY, n_starts=STARTS, **kw)


def assert_same_fit(a, b, x, what=""):
    """Two fits of ``x`` whose computations differ only by the rounding of sums: they stop
    within a step of each other, a step being below ``tol`` in units of the data's spread
    (20 steps of slack for a slowly contracting EM), plus the rounding of ``n`` terms."""
    x = np.asarray(x, np.float64)
    spread, n = x.std(), x.size
    slack = 20 * TOL + rtol_for(n)
    assert int(a.status) == int(b.status), what
    for field, unit in zip(MixtureParams._fields, (1.0, spread, spread)):
        np.testing.assert_allclose(np.asarray(getattr(a.params, field), np.float64),
                                   np.asarray(getattr(b.params, field), np.float64),
                                   rtol=0, atol=slack * unit, err_msg=f"{what} {field}")
    # The log-likelihood is flat at the optimum: a parameter error e (in spreads) moves it by
    # about n e^2, and its own rounding is that of a sum of n terms.
    ll = float(a.loglik)
    np.testing.assert_allclose(float(b.loglik), ll, rtol=0,
                               atol=n * (K * 3 * slack) ** 2 + rtol_for(n) * abs(ll) + 1e-12, err_msg=what)


# --------------------------------------------------------------------------- #
# Same as alone; independent of batching
# --------------------------------------------------------------------------- #
def test_starts_are_the_group_alone_starts_from_its_own_key():
    # The padded rows' starts equal init_params(group_key(key, label), x) of the unpadded data,
    # to the rounding of the sums (the random draws are the same numbers).
    data = groups_of([100, 77, 120])  # test_fit_groups_equals_each_group_fitted_alone's
    table = _groups.as_table(data)
    call = _groups.plan_calls(np.diff(table.offsets))[0]
    assert (call.length, call.rows) == (128, 128)
    x, w = _groups.pad_rows(table.flat, table.offsets, call.members, call.length, call.rows, table.flat.dtype)
    hi, lo = _groups._id_words([_groups.label_id(lab) for lab in table.labels])
    pad = call.rows - 3
    starts = _groups._group_starts(KEY, jnp.asarray(np.r_[hi, [hi[0]] * pad]), jnp.asarray(np.r_[lo, [lo[0]] * pad]),
                                   jnp.asarray(x), jnp.asarray(w), k=K, method="kmeans++", n_starts=STARTS)
    for i, label in enumerate(table.labels[:2]):
        alone = jaxgmm.init_params(group_key(KEY, label), jnp.asarray(data[label], DTYPE), K, n_starts=STARTS)
        spread = float(np.std(data[label]))
        for field in MixtureParams._fields:
            np.testing.assert_allclose(np.asarray(getattr(starts, field))[:, i], np.asarray(getattr(alone, field)),
                                       rtol=rtol_for(128), atol=rtol_for(128) * spread)
    # Another label's key gives other starts (the check above can fail).
    other = jaxgmm.init_params(group_key(KEY, "g9"), jnp.asarray(data["g0"], DTYPE), K, n_starts=STARTS)
    assert not np.allclose(np.asarray(other.means), np.asarray(starts.means)[:, 0])


def test_fit_groups_equals_each_group_fitted_alone():
    data = groups_of([100, 77, 120])
    res = fit_groups(data)
    x = jnp.asarray(data["g0"], DTYPE)
    starts = jaxgmm.init_params(group_key(KEY, "g0"), x, K, n_starts=STARTS)
    alone = jaxgmm.best_of(jaxgmm.fit(x, starts, accelerate=ACC))
    assert_same_fit(res["g0"], alone, data["g0"], "g0")
    assert res.n.tolist() == [100, 77, 120] and res.converged.all()


def test_padding_with_weight_zero_changes_a_fit_only_by_rounding():
    # Exactly 25 EM iterations (tol=0) of one start, on the padded row of a group call's shape
    # and on the unpadded group: the same arithmetic but for the order of the sums.
    data = groups_of([100, 90])
    table = _groups.as_table(data)
    x, w = _groups.pad_rows(table.flat, table.offsets, np.arange(2), 128, 128, table.flat.dtype)
    start = MixtureParams(jnp.asarray([0.5, 0.5], DTYPE), jnp.asarray([-1.0, 2.0], DTYPE), jnp.asarray([1.0, 1.0], DTYPE))
    starts = jax.tree_util.tree_map(lambda f: jnp.broadcast_to(f, (STARTS, 128, K)), start)
    padded = jaxgmm.best_of(jaxgmm.fit(jnp.asarray(x), starts, sample_weight=jnp.asarray(w), tol=0, max_iter=25,
                                       accelerate=ACC))
    alone = jaxgmm.best_of(jaxgmm.fit(jnp.asarray(data["g0"], DTYPE),
                                      jax.tree_util.tree_map(lambda f: jnp.broadcast_to(f, (STARTS, K)), start),
                                      tol=0, max_iter=25, accelerate=ACC))
    assert int(padded.n_iter[0]) == int(alone.n_iter) == 25
    spread = float(np.std(data["g0"]))
    bound = 25 * rtol_for(100)  # each iteration's sums round afresh; EM contracts the errors
    for field, unit in zip(MixtureParams._fields, (1.0, spread, spread)):
        np.testing.assert_allclose(np.asarray(getattr(padded.params, field))[0], np.asarray(getattr(alone.params, field)),
                                   rtol=0, atol=bound * unit)
    np.testing.assert_allclose(float(padded.loglik[0]), float(alone.loglik), rtol=bound)
    # And the padding is not simply ignored by this comparison: counting it as data moves the fit.
    counted = jaxgmm.best_of(jaxgmm.fit(jnp.asarray(x), starts, sample_weight=jnp.ones_like(jnp.asarray(w)),
                                        tol=0, max_iter=25, accelerate=ACC))  # the padded call's program
    moved = np.abs(np.asarray(counted.params.means)[0] - np.asarray(alone.params.means))
    assert np.max(moved) > 30 * bound * spread


def test_results_do_not_depend_on_order_or_partition():
    sizes = [66, 128, 90, 101, 75, 113]
    data = groups_of(sizes, seed=1)
    whole = fit_groups(data)
    labels = list(data)
    shuffled = fit_groups({lab: data[lab] for lab in labels[::-1]})
    parts = [fit_groups({lab: data[lab] for lab in labels[:2]}), fit_groups({lab: data[lab] for lab in labels[2:]})]
    assert shuffled.labels == labels[::-1]
    for lab in labels:
        part = parts[0] if lab in parts[0] else parts[1]
        assert_same_fit(whole[lab], shuffled[lab], data[lab], lab)
        assert_same_fit(whole[lab], part[lab], data[lab], lab)
    # The same values under another label are another group with other starts.
    renamed = fit_groups({"other": data["g0"]})
    assert not np.array_equal(np.asarray(renamed["other"].n_iter), np.asarray(whole["g0"].n_iter)) or \
        not np.allclose(renamed["other"].params.means, whole["g0"].params.means, rtol=0, atol=0)


# --------------------------------------------------------------------------- #
# Bad groups are isolated
# --------------------------------------------------------------------------- #
def test_too_few_nan_and_constant_groups_get_their_own_status():
    data = groups_of([100, 80], seed=2)
    good = fit_groups(dict(data))
    nan_group = draw(5, 110)
    nan_group[[3, 50, 77]] = np.nan
    bad = dict(data, few=draw(3, 4), const=np.full(90, 2.5), nan=nan_group,
               allnan=np.full(70, np.nan), empty=np.zeros(0))
    res = fit_groups(bad, nan_policy="omit")
    status = {lab: Status(int(res[lab].status)) for lab in res}
    assert status["few"] == status["allnan"] == status["empty"] == Status.TOO_FEW
    assert status["const"] == Status.DEGENERATE
    assert status["nan"] == Status.CONVERGED
    for lab in ("few", "allnan", "empty"):
        r = res[lab]
        assert int(r.n_iter) == 0 and not bool(r.converged)
        assert np.isnan(r.params.means).all() and np.isnan(r.loglik)
    assert res.n[res.index("nan")] == 107 and res.n[res.index("allnan")] == 0 and res.n[res.index("few")] == 4
    assert np.isfinite(res["const"].loglik)
    # The good groups fit as they do without the bad ones; the NaN group as its finite values.
    for lab in data:
        assert_same_fit(good[lab], res[lab], data[lab], lab)
    clean = fit_groups({"nan": nan_group[np.isfinite(nan_group)]})
    assert_same_fit(clean["nan"], res["nan"], nan_group[np.isfinite(nan_group)], "nan")
    # TOO_FEW ranks as unusable in best_of, below a degenerate fit.
    both = jax.tree_util.tree_map(lambda a, b: np.stack([a, b]), res["few"]._replace(model=None),
                                  res["const"]._replace(model=None))
    assert int(jaxgmm.best_of(both).status) == Status.DEGENERATE


def test_nan_policy_raise_names_the_groups():
    data = groups_of([70], seed=3)
    data[("site", 4)] = np.r_[draw(1, 80), np.inf]
    with pytest.raises(ValueError, match=r"1 group\(s\): \('site', 4\).*nan_policy='omit'"):
        fit_groups(data)
    with pytest.raises(ValueError, match="nan_policy"):
        fit_groups(data, nan_policy="drop")


# --------------------------------------------------------------------------- #
# Inputs and labels
# --------------------------------------------------------------------------- #
def test_labels_of_any_hashable_kind_and_the_input_forms():
    labels = [3, "3", (1, "a"), 2.5, None, ("x", (2, 3.0))]
    sizes = [70, 80, 90, 100, 110, 120]
    parts = [draw(10 + i, n) for i, n in enumerate(sizes)]
    values = np.concatenate(parts)
    groups = [lab for lab, n in zip(labels, sizes) for _ in range(n)]
    perm = np.random.default_rng(0).permutation(values.size)  # rows in any order
    res = jaxgmm.fit_groups(values[perm], [groups[i] for i in perm], K, key=KEY, n_starts=STARTS)
    assert len(res) == 6 and set(map(_groups.canonical_label, res.labels)) == set(map(_groups.canonical_label, labels))
    assert res[3] is not None and res[np.int64(3)].loglik == res[3.0].loglik  # equal numbers: one label
    assert res["3"].loglik != res[3].loglik
    assert res[("x", (2, 3))].loglik == res[("x", (2, 3.0))].loglik
    with pytest.raises(KeyError, match="no group 4"):
        res[4]
    as_dict = fit_groups(dict(zip(labels, parts)))
    for lab, x in zip(labels, parts):
        assert res.n[res.index(lab)] == x.size
        assert_same_fit(res[lab], as_dict[lab], x, repr(lab))
    # A list of arrays: labels are positions; K may come second.
    listed = jaxgmm.fit_groups(parts[:2], K, key=KEY, n_starts=STARTS)
    assert listed.labels == [0, 1]
    # Numeric label arrays (np.unique's path) give the same groups as Python lists.
    codes = np.repeat(np.array([5, 2]), [70, 80])
    by_codes = jaxgmm.fit_groups(np.r_[parts[0], parts[1]], codes, K, key=KEY, n_starts=STARTS)
    assert by_codes.labels == [5, 2] and isinstance(by_codes.labels[0], int)
    # Canonical ids: equal numbers agree, kinds differ.
    assert _groups.label_id(1) == _groups.label_id(1.0) == _groups.label_id(np.int32(1)) == _groups.label_id(True)
    assert len({_groups.label_id(v) for v in (1, "1", b"1", (1,), 1.5)}) == 5


def test_pandas_dataframe_input_and_table_output():
    pd = pytest.importorskip("pandas")
    sizes = [66, 95, 80]  # one bucket (128), as the other tests
    parts = [draw(20 + i, n) for i, n in enumerate(sizes)]
    df = pd.DataFrame({"site": np.repeat(["a", "b", "a"], sizes), "day": np.repeat([1, 1, 2], sizes),
                       "y": np.concatenate(parts)})
    res = jaxgmm.fit_groups(df, None, K, key=KEY, n_starts=STARTS, value="y", by=["site", "day"])
    assert res.labels == [("a", 1), ("b", 1), ("a", 2)] and res.n.tolist() == sizes
    alone = fit_groups({("b", 1): parts[1]})
    assert_same_fit(res[("b", 1)], alone[("b", 1)], parts[1])
    one = jaxgmm.fit_groups(df.loc[df["day"] == 1, ["site", "y"]], K, key=KEY, n_starts=STARTS, by="site")
    assert one.labels == ["a", "b"] and one.n.tolist() == [66, 95]  # value= inferred: the only other column
    table = res.to_pandas()
    assert list(table.columns) == ["group", "n", "status", "converged", "n_iter", "loglik",
                                   "pi_1", "pi_2", "mu_1", "mu_2", "sigma_1", "sigma_2"]
    assert table["group"].tolist() == res.labels and (table["status"] == "CONVERGED").all()
    np.testing.assert_array_equal(table["mu_2"].to_numpy(), res.params.means[:, 1])
    with pytest.raises(TypeError, match="value="):
        jaxgmm.fit_groups(df, K, key=KEY, by="site")
    with pytest.raises(ValueError, match="by='place': no such column"):
        jaxgmm.fit_groups(df, K, key=KEY, by="place", value="y")
    with pytest.raises(TypeError, match="by="):
        jaxgmm.fit_groups(df, df["site"], K, key=KEY)


def test_result_without_pandas_and_argument_errors(monkeypatch):
    res = fit_groups(groups_of([70, 71], seed=4))
    assert list(res) == ["g0", "g1"] and "g1" in res and "g2" not in res
    fits = res.fits()
    assert fits.params.means.shape == (2, K) and fits.status.dtype == np.int32
    assert isinstance(res.loglik, np.ndarray) and res.columns()["mu_1"].shape == (2,)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="needs pandas"):
        res.to_pandas()
    x = draw(0, 80)
    with pytest.raises(ValueError, match="80 entries"):
        jaxgmm.fit_groups(x, ["a"] * 79, K, key=KEY)
    with pytest.raises(TypeError, match="key= is required"):
        jaxgmm.fit_groups({"a": x}, K)
    with pytest.raises(ValueError, match="fixed= needs the fixed values"):
        jaxgmm.fit_groups({"a": x}, K, key=KEY, fixed="scales")
    with pytest.raises(TypeError, match="stable text form"):
        jaxgmm.fit_groups({object(): x}, K, key=KEY)
    with pytest.raises(TypeError, match="groups is required"):
        jaxgmm.fit_groups(x, None, K, key=KEY)
    with pytest.raises(TypeError, match="init_or_K"):
        jaxgmm.fit_groups({"a": x}, key=KEY)


# --------------------------------------------------------------------------- #
# Compilation
# --------------------------------------------------------------------------- #
def test_plan_merges_small_buckets_and_bounds_the_shapes():
    # Without merging: one shape per bucket of the ladder (powers of two).
    rng = np.random.default_rng(15)
    counts = rng.integers(200, 1000, 2000)
    plain = _groups.plan_calls(counts, merge_points=0)
    assert sorted({(c.length, c.rows) for c in plain}) == [(256, 256), (512, 1024), (1024, 2048)]
    assert sorted(np.concatenate([c.members for c in plain]).tolist()) == list(range(2000))
    for c in plain:
        assert c.members.size <= c.rows and (counts[c.members] <= c.length).all()
        assert (counts[c.members] > c.length // 2).all()
    # With it: 2,000 groups of 200..999 are one bucket (padding them costs less than two
    # more compiles); a few short groups next to a long one join it, many do not.
    assert {(c.length, c.rows) for c in _groups.plan_calls(counts)} == {(1024, 2048)}
    assert {c.length for c in _groups.plan_calls([5, 150, 150, 100_000])} == {131072}
    many = _groups.plan_calls(np.r_[np.full(5000, 150), 100_000])
    assert {c.length for c in many} == {256, 131072}
    # Calls never exceed the data budget, and spare rows are filler.
    assert all(c.rows * c.length <= _groups.MAX_CALL_POINTS for c in many)
    x, w = _groups.filler_row(256, K, 3 * K - 1, np.float64)
    assert w.sum() == 16 and x[w > 0].min() < x[w > 0].max()


def test_192_distinct_sizes_compile_one_program_per_bucket(monkeypatch):
    monkeypatch.setattr(_groups, "MERGE_POINTS", 0)  # two buckets, not merged into one
    sizes = np.arange(65, 257)  # 192 distinct sizes, two buckets (128: the other tests', and 256)
    rng = np.random.default_rng(5)
    rng.shuffle(sizes)
    data = groups_of(sizes, seed=5)
    plan = _groups.plan_calls(sizes, merge_points=0)
    shapes = {(c.length, c.rows) for c in plan}
    buckets = {c.length for c in plan}
    assert len(buckets) == 2 and len(shapes) == len(buckets)
    with backend_compiles() as compiles:
        engine_before = jaxgmm._engine.solve._cache_size()
        res = fit_groups(data)
        engine_programs = jaxgmm._engine.solve._cache_size() - engine_before
        first = len(compiles)
        # Other values, other labels, other order, the same buckets: nothing compiles.
        again = fit_groups({f"h{i}": draw(777 + i, n) for i, n in enumerate(sizes[::-1])})
        second = len(compiles) - first
    assert res.converged.mean() > 0.95 and again.converged.mean() > 0.95
    # One engine program per call shape at most (fewer where an earlier test compiled one),
    # and every other program of a call (starts, validation, best_of) a few per shape.
    assert engine_programs <= len(shapes)
    assert first <= 12 * len(shapes), first
    assert second == 0, second


# --------------------------------------------------------------------------- #
# Larger, slower
# --------------------------------------------------------------------------- #
@pytest.mark.slow
def test_ragged_sizes_from_the_free_parameter_count_to_1e5():
    sizes = [4, 5, 6, 9, 17, 300, 1000, 100_000]
    data = groups_of(sizes, seed=6)
    res = fit_groups(data)
    assert Status(int(res["g0"].status)) == Status.TOO_FEW
    assert all(int(res[f"g{i}"].status) != Status.TOO_FEW for i in range(1, len(sizes)))
    for i in (5, 6, 7):
        lab = f"g{i}"
        x = jnp.asarray(data[lab], DTYPE)
        starts = jaxgmm.init_params(group_key(KEY, lab), x, K, n_starts=STARTS)
        alone = jaxgmm.best_of(jaxgmm.fit(x, starts, accelerate=ACC))
        assert_same_fit(res[lab], alone, data[lab], lab)
    big = res["g7"].params
    order = np.argsort(np.asarray(big.means))
    # n = 1e5: the estimates sit within a few standard errors of the truth.
    np.testing.assert_allclose(np.asarray(big.weights)[order], [0.3, 0.7], atol=5 * 0.01)
    np.testing.assert_allclose(np.asarray(big.means)[order], [0.0, 3.0], atol=5 * 0.02)


@pytest.mark.slow
def test_shared_start_with_fixed_scales():
    data = groups_of([100, 120, 90], seed=8)
    start = MixtureParams(jnp.asarray([0.5, 0.5]), jnp.asarray([-0.5, 3.5]), jnp.asarray([1.0, 1.0]))
    res = jaxgmm.fit_groups(data, start, fixed="scales")
    np.testing.assert_array_equal(res.params.scales, np.ones((3, K), res.params.scales.dtype))
    assert res.converged.all()
    for lab, x in data.items():
        alone = jaxgmm.fit(jnp.asarray(x, DTYPE), start, fixed="scales", accelerate=ACC)
        assert_same_fit(res[lab], alone, x, lab)


def test_dask_partitions_give_the_same_fits():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    parts = groups_of([70, 90, 110, 125], seed=9)
    df = pd.DataFrame({"g": np.concatenate([[lab] * x.size for lab, x in parts.items()]),
                       "y": np.concatenate(list(parts.values()))})
    ddf = dd.from_pandas(df, npartitions=2).shuffle("g")  # whole groups per partition

    def fit_partition(frame):
        return jaxgmm.fit_groups(frame, K, key=KEY, n_starts=STARTS, by="g", value="y").to_pandas()

    out = ddf.map_partitions(fit_partition, meta=fit_partition(df[df["g"] == "g0"])).compute()
    whole = fit_groups(parts)
    for _, row in out.iterrows():
        lab = row["group"]
        np.testing.assert_allclose(row["mu_1"], whole[lab].params.means[0], rtol=0,
                                   atol=(20 * TOL + rtol_for(128)) * np.std(parts[lab]))
