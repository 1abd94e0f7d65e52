"""Monte Carlo studies that never give a silent wrong answer (issue 21).

Replicate indices past 2**32, arguments that used to crash deep inside JAX (or
be accepted), and what ``chunk_size`` does and does not change.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from conftest import DTYPE

M = jaxgmm.MixtureParams
TRUTH = M(jnp.asarray([0.2, 0.8], DTYPE), jnp.asarray([0.0, 5.0], DTYPE), jnp.asarray([1.0, 2 ** 0.5], DTYPE))
SPREAD = float(np.sqrt(0.2 * 1 + 0.8 * 2 + 0.2 * 0.8 * 25))  # SD of the true mixture
# One design and chunk shape for most study tests (compiled once per process).
N, STUDY = 100, dict(fixed="scales", chunk_size=8)


def test_replicate_indices_do_not_wrap_at_2_to_the_32():
    x = np.asarray(jaxgmm.simulate_replicates(0, TRUTH, 50, np.array([0, 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40])))
    assert len({row.tobytes() for row in x}) == 5  # five indices, five datasets
    # Below 2**32 the stream is fold_in(key, r) as always.
    keys = jax.random.split(jax.random.fold_in(jax.random.key(0), 1))
    np.testing.assert_array_equal(x[1], np.asarray(jaxgmm.sample(keys[0], TRUTH, 50)))
    # A block of a study across 2**32 holds replicates 2**32 - 4 .. 2**32 + 3, not 0 .. 3 again.
    across = jaxgmm.monte_carlo(0, TRUTH, N, 8, offset=2 ** 32 - 4, **STUDY)
    above = jaxgmm.monte_carlo(0, TRUTH, N, 4, offset=2 ** 32, **STUDY)
    low = jaxgmm.monte_carlo(0, TRUTH, N, 4, **STUDY)
    np.testing.assert_array_equal(above.estimates.means, across.estimates.means[4:])
    assert not np.any(np.all(above.estimates.means == low.estimates.means, axis=1))
    assert above.offset == 2 ** 32 and above.design["offset"] == 2 ** 32


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=None), TypeError, r"\bn must be an integer"),
    (dict(n=2 ** 40), ValueError, r"\bn must be a positive integer of at most"),
    (dict(n=2.5), ValueError, r"\bn must be a whole number"),
    (dict(key=1.5), TypeError, r"key must be a jax.random key or an integer seed"),
    (dict(key="0"), TypeError, r"key must be"),
    (dict(key=2 ** 64), ValueError, r"key: an integer seed must lie in"),
    (dict(reps=None), TypeError, r"reps must be an integer"),
    (dict(reps=True), TypeError, r"reps must be an integer"),
    (dict(reps=0), ValueError, r"reps must be a positive integer"),
    (dict(reps=2 ** 64), ValueError, r"reps must be a positive integer of at most"),
    (dict(offset=-1), ValueError, r"offset must be an integer >= 0"),
    (dict(offset=2 ** 63 - 2, reps=5), ValueError, r"offset \+ reps must be at most 2\*\*63"),
    (dict(chunk_size=0), ValueError, r"chunk_size must be a positive integer"),
    (dict(generate="normal"), TypeError, r"generate must be a function"),
    (dict(on_chunk=3), TypeError, r"on_chunk must be a function"),
])
def test_bad_study_arguments_are_named(kwargs, error, match):
    args = dict(key=0, truth=TRUTH, n=100, reps=10)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        jaxgmm.monte_carlo(args.pop("key"), args.pop("truth"), args.pop("n"), args.pop("reps"), **args)


@pytest.mark.parametrize("indices, error, match", [
    ([1.5], TypeError, "indices must be integer replicate indices"),
    (["3"], TypeError, "indices must be integer"),
    ([-1, 2], ValueError, r"indices must lie in \[0, 2\*\*63\)"),
])
def test_bad_replicate_indices_are_named(indices, error, match):
    with pytest.raises(error, match=match):
        jaxgmm.simulate_replicates(0, TRUTH, 10, indices)


def test_bad_bootstrap_counts_are_named():
    with pytest.raises(TypeError, match="n_boot must be an integer"):
        jaxgmm.bootstrap(0, np.arange(10.0), TRUTH, None)
    with pytest.raises(ValueError, match="n_boot must be a positive integer of at most"):
        jaxgmm.bootstrap(0, np.arange(10.0), TRUTH, 2 ** 33)


# --------------------------------------------------------------------------- #
# chunk_size: the data never depend on it; the fits do, by rounding
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def chunked_48_and_8():
    return (jaxgmm.monte_carlo(11, TRUTH, N, 96, fixed="scales", chunk_size=48),
            jaxgmm.monte_carlo(11, TRUTH, N, 96, **STUDY))


def test_chunk_size_changes_fits_only_within_the_stopping_rule(chunked_48_and_8):
    a, b = chunked_48_and_8
    assert a.design["chunk_size"] == 48 and b.design["chunk_size"] == 8
    np.testing.assert_array_equal(a.status, b.status)
    # Same data; fits stop within a few steps' reach of each other (largest step
    # below tol, in units of the data's SD).
    tol = jaxgmm.default_tol(DTYPE)
    for f, unit in (("weights", 1.0), ("means", SPREAD)):
        np.testing.assert_allclose(getattr(a.estimates, f), getattr(b.estimates, f), rtol=0, atol=10 * tol * unit)


def test_results_do_not_depend_on_chunk_size(chunked_48_and_8):
    # Was xfail (issue 21, item 8): XLA's CPU compiler sums the rows of a small
    # block (8 x 100 values) in blocks of 32 and a large one (48 x 100) in one
    # pass, so the two chunk sizes rounded differently.  The engine of issue 15
    # sizes a compacting block from the batch (at most a quarter of it, at least
    # 8 lanes): both chunks now run in blocks of 8-12 lanes, summed alike, and
    # the fits are bit-identical.  Not a general promise (docs/robustness.md):
    # blocks of other sizes can still round a sum differently.
    a, b = chunked_48_and_8
    np.testing.assert_array_equal(a.n_iter, b.n_iter)
    for f in M._fields:
        np.testing.assert_array_equal(getattr(a.estimates, f), getattr(b.estimates, f))
