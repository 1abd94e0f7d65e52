"""``jaxgmm.save`` / ``jaxgmm.load``: bit-exact round trips and refusals with reasons."""

import io
import json
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from jaxgmm import FitResult, MixtureParams, Status
from jaxgmm import _io
from conftest import DTYPE


def params_batch():
    # Values with full mantissas (thirds, square roots) so that any rounding on
    # the way shows as a changed bit.
    w = jnp.asarray([[1 / 3, 2 / 3], [0.25, 0.75], [0.5, 0.5]], DTYPE)
    m = jnp.asarray([[-1 / 3, 2 ** 0.5], [0.1, 1e10 / 3], [-0.0, 7 / 9]], DTYPE)
    s = jnp.asarray([[1e-30 / 3, 1.0], [3 ** 0.5, 1e20 / 7], [5 / 7, 1 / 11]], DTYPE)
    return MixtureParams(w, m, s)


def a_result():
    p = params_batch()
    return FitResult(p, jnp.asarray([-1234.5678 / 3, -jnp.inf, jnp.nan], DTYPE),
                     jnp.asarray([12, 10_000, 3], jnp.int32),
                     jnp.asarray([Status.CONVERGED, Status.MAX_ITER, Status.NONFINITE], jnp.int32),
                     jnp.asarray([True, False, False]))


def assert_bit_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def test_params_round_trip_bit_exact(tmp_path):
    p = params_batch()
    path = tmp_path / "params.npz"
    jaxgmm.save(path, p)
    back = jaxgmm.load(path)
    assert isinstance(back, MixtureParams)
    for a, b in zip(p, back):
        assert_bit_equal(a, b)
    # The name is used as given, no extension added; file objects work too.
    jaxgmm.save(tmp_path / "noext", MixtureParams(*(f[0] for f in p)))
    assert (tmp_path / "noext").exists()
    buf = io.BytesIO()
    jaxgmm.save(buf, p)
    buf.seek(0)
    assert_bit_equal(jaxgmm.load(buf).scales, p.scales)


def test_result_round_trip_bit_exact_with_model(tmp_path):
    from jaxgmm._spec import make_spec

    r = a_result()._replace(model=make_spec("scales", 2, equal_scales=True))
    path = tmp_path / "result.npz"
    jaxgmm.save(path, r)
    back = jaxgmm.load(path)
    assert isinstance(back, FitResult)
    for name in ("loglik", "n_iter", "status", "converged"):
        assert_bit_equal(getattr(r, name), getattr(back, name))
    for a, b in zip(r.params, back.params):
        assert_bit_equal(a, b)
    assert back.model == r.model
    assert jaxgmm.load(_saved(tmp_path, a_result())).model is None  # none saved, none restored
    meta = json.loads(str(np.load(path, allow_pickle=False)[_io.META_KEY]))
    assert meta["kind"] == "FitResult" and meta["format_version"] == _io.FORMAT_VERSION
    assert meta["jaxgmm_version"] == jaxgmm.__version__ and meta["dtype"] == np.dtype(DTYPE).name


def _saved(tmp_path, obj):
    path = tmp_path / "saved.npz"
    jaxgmm.save(path, obj)
    return path


def test_fitted_result_round_trip_and_use(tmp_path):
    truth = MixtureParams(jnp.asarray([0.3, 0.7], DTYPE), jnp.asarray([0.0, 4.0], DTYPE),
                          jnp.asarray([1.0, 1.5], DTYPE))
    x = jaxgmm.sample(jaxgmm_key(), truth, 200)
    result = jaxgmm.fit(x, truth)
    jaxgmm.save(tmp_path / "fit.npz", result)
    back = jaxgmm.load(tmp_path / "fit.npz")
    assert back.model == result.model  # the fit's own model, restored
    assert_bit_equal(jaxgmm.score_samples(x, back), jaxgmm.score_samples(x, result))


def jaxgmm_key():
    import jax
    return jax.random.key(0)


def rewrite(path, out, change):
    """Copy the .npz at ``path`` to ``out`` with ``change(entries)`` applied."""
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    change(entries)
    with open(out, "wb") as f:
        np.savez(f, **entries)


def set_meta(entries, **updates):
    meta = json.loads(str(entries[_io.META_KEY]))
    meta.update(updates)
    entries[_io.META_KEY] = np.array(json.dumps(meta))


def test_refuses_tampered_foreign_and_newer_files(tmp_path):
    good = tmp_path / "good.npz"
    jaxgmm.save(good, a_result())
    bad = tmp_path / "bad.npz"

    def bump_mean(e):
        e["params.means"] = e["params.means"].copy()
        e["params.means"][0, 0] += 1
    rewrite(good, bad, bump_mean)
    with pytest.raises(ValueError, match="checksum does not match.*modified after saving"):
        jaxgmm.load(bad)
    rewrite(good, bad, lambda e: e.pop("loglik"))
    with pytest.raises(ValueError, match="do not match those the metadata lists"):
        jaxgmm.load(bad)
    rewrite(good, bad, lambda e: e.__setitem__("n_iter", e["n_iter"].astype(np.int64)))
    with pytest.raises(ValueError, match="has dtype <i8"):
        jaxgmm.load(bad)
    rewrite(good, bad, lambda e: set_meta(e, format_version=_io.FORMAT_VERSION + 1, jaxgmm_version="9.0"))
    with pytest.raises(ValueError, match=r"written by jaxgmm 9.0 in file format version 2.*upgrade"):
        jaxgmm.load(bad)
    rewrite(good, bad, lambda e: set_meta(e, kind="MultivariateParams"))
    with pytest.raises(ValueError, match=r"says MultivariateParams but the arrays \['weights'"):
        jaxgmm.load(bad)
    rewrite(good, bad, lambda e: set_meta(e, kind="Zebra"))
    with pytest.raises(ValueError, match="unknown kind of jaxgmm object 'Zebra'"):
        jaxgmm.load(bad)
    rewrite(good, bad, lambda e: set_meta(e, format="other"))
    with pytest.raises(ValueError, match="not a jaxgmm file: metadata format"):
        jaxgmm.load(bad)
    # A foreign .npz, a pickled object array, and something that is not a zip at all.
    with open(bad, "wb") as f:
        np.savez(f, weights=np.ones(2))
    with pytest.raises(ValueError, match="no '__jaxgmm__' metadata entry"):
        jaxgmm.load(bad)
    with open(bad, "wb") as f:
        np.savez(f, __jaxgmm__=np.array([{"format": "jaxgmm"}], dtype=object))
    with pytest.raises(ValueError, match="not a jaxgmm file.*pickle"):
        jaxgmm.load(bad)
    bad.write_bytes(b"definitely not a zip file")
    with pytest.raises(ValueError, match="not a jaxgmm file"):
        jaxgmm.load(bad)
    # A damaged archive (bytes cut off).
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a jaxgmm file"):
        jaxgmm.load(bad)
    with pytest.raises(TypeError, match="MixtureParams, MultivariateParams or FitResult"):
        jaxgmm.save(bad, {"weights": [1.0]})
    assert zipfile.is_zipfile(good)
