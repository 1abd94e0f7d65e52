"""SQUAREM, compaction and the fast two-component pass give plain EM's answers.

No timings here (those are in ``bench/``).  Every tolerance derives from the float
type (``conftest.EPS``), the size of the computation and the convergence rule:
a fit stopped when one EM step moved less than ``tol`` lies within
``tol * r / (1 - r)`` of the optimum, ``r`` being EM's contraction rate.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
import reference as ref
from conftest import DTYPE, EPS, X64, rtol_for
from jaxgmm import MixtureParams, Status
from jaxgmm._em import data_moments, sufficient_stats, two_component_stats
from jaxgmm._fit import prepare_fit, run

SQRT2 = float(np.sqrt(2.0))
TRUTH = MixtureParams(np.array([0.2, 0.8]), np.array([0.0, 5.0]), np.array([1.0, SQRT2]))
START = MixtureParams(np.array([0.5, 0.5]), np.array([-1.0, 4.0]), np.array([1.0, SQRT2]))
# Overlapping components: EM is slow here (contraction rate close to 1).
OVERLAP = MixtureParams(np.array([0.3, 0.7]), np.array([0.0, 2.0]), np.array([1.0, 1.0]))
OVERLAP_START = MixtureParams(np.array([0.5, 0.5]), np.array([-0.5, 2.5]), np.array([1.0, 1.0]))
THREE = MixtureParams(np.array([0.3, 0.3, 0.4]), np.array([-3.0, 0.0, 4.0]), np.array([1.0, 0.7, 1.5]))
THREE_START = MixtureParams(np.array([0.2, 0.5, 0.3]), np.array([-2.0, 0.5, 3.0]), np.array([1.5, 1.0, 1.0]))

# (name, truth, start, fit kwargs, reference kwargs)
MODELS = [
    ("scales-known", OVERLAP, OVERLAP_START, dict(fixed="scales"), dict(fixed_s=[True, True])),
    ("all-free", TRUTH, START, dict(), dict()),
    ("equal-scales", TRUTH._replace(scales=np.array([1.2, 1.2])), START,
     dict(equal_scales=True), dict(equal_scales=True)),
    ("k3-one-weight-fixed", THREE, THREE_START._replace(weights=np.array([0.3, 0.4, 0.3])),
     dict(fixed=MixtureParams([True, False, False], False, False)), dict(fixed_w=[True, False, False])),
]


def models(*default):
    """MODELS as pytest params; only those named in ``default`` run by default, the
    others are ``slow``.  Scheduling (compaction, blocks, steps per trip) does not
    look at the model, so the default run keeps the most general models (free
    scales; K = 3 with a fixed weight, whose masks take the general M-step) and
    ``-m slow`` the rest."""
    return [pytest.param(*m, id=m[0], marks=() if m[0] in default else pytest.mark.slow) for m in MODELS]


def draw(seed, params, n=600, batch=None):
    rng = np.random.default_rng(seed)
    w, m, s = (np.asarray(f, np.float64) for f in params)
    shape = (n,) if batch is None else (batch, n)
    z = rng.choice(len(w), size=shape, p=w)
    return m[z] + s[z] * rng.standard_normal(shape)


def to_params(t):
    return MixtureParams(*(jnp.asarray(f, DTYPE) for f in t))


def as_np(params):
    return tuple(np.asarray(f, np.float64) for f in params)


def rounding_atol(x, n_iter):
    """Rounding budget of ``n_iter`` EM steps on ``x`` (as in test_core)."""
    return rtol_for(x.size) * np.sqrt(n_iter + 1) * 8 * np.abs(x).max()


def stopping_bound(x, start, n_iter, **ref_kw):
    """How far a fit stopped by the rule ``step < tol`` can be from the optimum."""
    r = ref.contraction_rate(x, *start, **ref_kw)
    tol = jaxgmm.default_tol(DTYPE)
    return 4 * tol * r / (1 - r) * x.std() + rounding_atol(x, n_iter)


def loglik_slack(x):
    """Rounding of a log-likelihood summed over ``x`` (absolute)."""
    return rtol_for(x.size) * 8 * x.size * (1.0 + np.log1p(np.abs(x).max()))


@pytest.mark.parametrize("name,truth,start,fit_kw,ref_kw", MODELS, ids=[m[0] for m in MODELS])
def test_squarem_reaches_the_same_optimum_never_lower(name, truth, start, fit_kw, ref_kw):
    x = draw(1, truth)
    plain = jaxgmm.fit(jnp.asarray(x, DTYPE), to_params(start), **fit_kw)
    fast = jaxgmm.fit(jnp.asarray(x, DTYPE), to_params(start), accelerate="squarem", **fit_kw)
    assert int(fast.status) == Status.CONVERGED == int(plain.status)
    mle, ll, _ = ref.em_fit(x, *start, tol=1e-14, **ref_kw)
    bound = stopping_bound(x, start, int(plain.n_iter), **ref_kw)
    for got in (plain, fast):
        for g, w in zip(as_np(got.params), mle):
            np.testing.assert_allclose(g, w, rtol=0, atol=bound)
    # Never a lower final log-likelihood than plain EM (beyond rounding of the sum).
    assert float(fast.loglik) >= float(plain.loglik) - loglik_slack(x)
    assert float(fast.loglik) <= ll + loglik_slack(x)


def test_squarem_needs_several_times_fewer_e_steps_when_em_is_slow():
    # The heavy-tailed case of issue 4: hundreds to thousands of plain EM steps.
    heavy = OVERLAP._replace(means=np.array([0.0, 1.0]))
    x = draw(2, heavy, batch=8)
    kw = dict(fixed="scales")
    plain = jaxgmm.fit(jnp.asarray(x, DTYPE), to_params(OVERLAP_START), **kw)
    fast = jaxgmm.fit(jnp.asarray(x, DTYPE), to_params(OVERLAP_START), accelerate="squarem", **kw)
    assert np.all(np.asarray(fast.status) == Status.CONVERGED)
    assert np.sum(fast.n_iter) * 3 < np.sum(plain.n_iter)
    slack = loglik_slack(x[0])
    assert np.all(np.asarray(fast.loglik) >= np.asarray(plain.loglik) - slack)


def test_squarem_n_iter_counts_e_steps_and_respects_max_iter():
    x = jnp.asarray(draw(3, OVERLAP), DTYPE)
    p = to_params(OVERLAP_START)
    for max_iter in (1, 2, 3, 4, 10):
        res = jaxgmm.fit(x, p, fixed="scales", accelerate="squarem", tol=0, max_iter=max_iter)
        assert int(res.n_iter) == max_iter and int(res.status) == Status.MAX_ITER
    # One or two E-steps are plain EM steps: same parameters as plain EM.
    for max_iter in (1, 2):
        a = jaxgmm.fit(x, p, fixed="scales", accelerate="squarem", tol=0, max_iter=max_iter)
        b = jaxgmm.fit(x, p, fixed="scales", tol=0, max_iter=max_iter)
        for g, w in zip(as_np(a.params), as_np(b.params)):
            np.testing.assert_allclose(g, w, rtol=0, atol=rounding_atol(np.asarray(x), max_iter))
    none = jaxgmm.fit(x, p, fixed="scales", accelerate="squarem", max_iter=0)
    assert int(none.n_iter) == 0 and int(none.status) == Status.MAX_ITER
    np.testing.assert_allclose(np.asarray(none.params.means), OVERLAP_START.means, rtol=4 * EPS)


def test_squarem_batch_equals_single_fits_with_weights():
    x = draw(4, TRUTH, n=300, batch=3)
    w = np.random.default_rng(5).integers(0, 3, size=x.shape).astype(np.float64)
    batch = jaxgmm.fit(jnp.asarray(x, DTYPE), to_params(START), sample_weight=jnp.asarray(w, DTYPE),
                       accelerate="squarem")
    for i in range(3):
        one = jaxgmm.fit(jnp.asarray(x[i], DTYPE), to_params(START), sample_weight=jnp.asarray(w[i], DTYPE),
                         accelerate="squarem")
        atol = rounding_atol(x[i], int(one.n_iter)) + 4 * jaxgmm.default_tol(DTYPE) * x[i].std()
        for g, s in zip(as_np(batch.params), as_np(one.params)):
            np.testing.assert_allclose(g[i], s, rtol=0, atol=atol)
        # Weighted reference optimum: integer weights act as repeated observations.
        mle, ll, _ = ref.em_fit(x[i], *START, tol=1e-14, sample_weight=w[i])
        assert float(batch.loglik[i]) == pytest.approx(ll, abs=loglik_slack(x[i]) + 1e-3 * (not X64))


def _scheduled(x, start, rows, refill=None, accelerate=None, steps_per_trip=1, **kw):
    """A fit on blocks of ``rows`` lanes, refilled once ``refill`` have stopped
    (``None``: blocks, refilled only when all have); ``(result, work)``."""
    args = prepare_fit(x, start, accelerate=accelerate, **kw)
    policy = "blocks" if refill is None else "compact"
    tuning = args.tuning._replace(policy=policy, rows=rows, refill=rows if refill is None else refill,
                                  steps_per_trip=steps_per_trip)
    return run(args._replace(tuning=tuning))


def assert_identical(a, b):
    for name in ("params", "loglik", "n_iter", "status"):
        for u, v in zip(np.atleast_1d(getattr(a, name)), np.atleast_1d(getattr(b, name))):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=name)


def check_same_fits(packed, work, whole, x, start, ref_kw):
    """Compacted fits agree with the same fits in another block shape, to the
    stopping rule's bound."""
    assert int(work.lane_iterations) >= int(np.sum(packed.n_iter))
    np.testing.assert_array_equal(np.asarray(packed.status), np.asarray(whole.status))
    n_iter = int(np.max(whole.n_iter))
    bound = max(stopping_bound(x[i], start, n_iter, **ref_kw) for i in range(0, len(x), 6))
    for g, w in zip(as_np(packed.params), as_np(whole.params)):
        np.testing.assert_allclose(g, w, rtol=0, atol=2 * bound)
    assert np.all(np.abs(np.asarray(packed.loglik) - np.asarray(whole.loglik)) <= 2 * loglik_slack(x[0]))


@pytest.mark.parametrize("name,truth,start,fit_kw,ref_kw", models("all-free")[:2])
def test_compacted_fits_equal_plain_fits(name, truth, start, fit_kw, ref_kw):
    x = draw(6, truth, n=400, batch=21)
    xs = jnp.asarray(x, DTYPE)
    # Small blocks refilled once 2 of their 8 lanes stop: many refills, fits
    # changing lanes' company all the time.  A fit's arithmetic never depends on
    # its block-mates, so the fits are bit-identical to blocks of the same size...
    packed, work = _scheduled(xs, to_params(start), rows=8, refill=2, **fit_kw)
    blocks, block_work = _scheduled(xs, to_params(start), rows=8, **fit_kw)
    assert_identical(packed, blocks)
    assert int(work.lane_iterations) < int(block_work.lane_iterations)
    # ...and agree with the default call (other block shapes) to the stopping rule.
    plain = jaxgmm.fit(xs, to_params(start), compact=False, **fit_kw)
    check_same_fits(packed, work, plain, x, start, ref_kw)
    assert np.all(np.abs(np.asarray(packed.n_iter) - np.asarray(plain.n_iter))
                  <= 0.1 * np.asarray(plain.n_iter) + 2)


def test_compacted_iteration_counts_are_exact_with_tol_zero():
    x = jnp.asarray(draw(7, TRUTH, n=200, batch=5), DTYPE)
    packed, work = _scheduled(x, to_params(START), rows=8, refill=1, tol=0.0, max_iter=10)
    plain = jaxgmm.fit(x, to_params(START), tol=0.0, max_iter=10, compact=False)
    assert np.all(np.asarray(packed.n_iter) == 10)
    for g, w in zip(as_np(packed.params), as_np(plain.params)):
        np.testing.assert_allclose(g, w, rtol=0, atol=rounding_atol(np.asarray(x), 10))
    # Public option: same results, and a single dataset with many starts works.
    public = jaxgmm.fit(x, to_params(START), tol=0.0, max_iter=10, compact=True)
    np.testing.assert_allclose(np.asarray(public.loglik), np.asarray(plain.loglik),
                               rtol=rtol_for(x.size) * 8)
    starts = MixtureParams(*(jnp.stack([f, f]) for f in to_params(START)))
    many = jaxgmm.fit(x[0], starts, tol=0.0, max_iter=10, compact=True)
    assert many.loglik.shape == (2,)
    np.testing.assert_allclose(np.asarray(many.loglik), float(plain.loglik[0]), rtol=rtol_for(x.size) * 8)


@pytest.mark.parametrize("name,truth,start,fit_kw,ref_kw", models("k3-one-weight-fixed"))
def test_compacted_squarem_fits_equal_squarem_fits(name, truth, start, fit_kw, ref_kw):
    x = draw(6, truth, n=400, batch=13)
    xs = jnp.asarray(x, DTYPE)
    packed, work = _scheduled(xs, to_params(start), rows=8, refill=2, accelerate="squarem", **fit_kw)
    blocks, _ = _scheduled(xs, to_params(start), rows=8, accelerate="squarem", **fit_kw)
    assert_identical(packed, blocks)
    whole = jaxgmm.fit(xs, to_params(start), accelerate="squarem", compact=False, **fit_kw)
    check_same_fits(packed, work, whole, x, start, ref_kw)


def test_compacted_squarem_with_tol_zero_takes_every_e_step():
    # tol = 0: every fit runs exactly max_iter E-steps (14: the last cycle is cut
    # short), whichever lanes it shares a block with.
    x = jnp.asarray(draw(7, OVERLAP, n=200, batch=12), DTYPE)
    kw = dict(fixed="scales", tol=0.0, max_iter=14)
    packed, _ = _scheduled(x, to_params(OVERLAP_START), rows=8, refill=1, accelerate="squarem", **kw)
    blocks, _ = _scheduled(x, to_params(OVERLAP_START), rows=8, accelerate="squarem", **kw)
    assert np.all(np.asarray(packed.n_iter) == 14)
    assert_identical(packed, blocks)
    # The public option; max_iter = 0 returns the start, as without compact.
    whole = jaxgmm.fit(x, to_params(OVERLAP_START), accelerate="squarem", compact=False, **kw)
    public = jaxgmm.fit(x, to_params(OVERLAP_START), accelerate="squarem", compact=True, **kw)
    np.testing.assert_allclose(np.asarray(public.loglik), np.asarray(whole.loglik), rtol=rtol_for(x.size) * 8)
    none = jaxgmm.fit(x, to_params(OVERLAP_START), accelerate="squarem", compact=True, fixed="scales", max_iter=0)
    assert np.all(np.asarray(none.n_iter) == 0) and np.all(np.asarray(none.status) == Status.MAX_ITER)
    np.testing.assert_allclose(np.asarray(none.params.means), np.tile(OVERLAP_START.means, (12, 1)), rtol=4 * EPS)


def test_option_errors():
    x = jnp.asarray(draw(8, TRUTH, n=50), DTYPE)
    with pytest.raises(ValueError, match="accelerate"):
        jaxgmm.fit(x, to_params(START), accelerate="anderson")
    with pytest.raises(ValueError, match="accelerate"):
        jaxgmm.fit(x, to_params(START), accelerate="anderson", compact=True)
    with pytest.raises(TypeError, match="compact"):
        jaxgmm.fit(x, to_params(START), compact="yes")


@pytest.mark.parametrize("free_scales,weighted", [(False, False), (True, True)])
def test_two_component_pass_matches_general_pass(free_scales, weighted):
    """The one-tanh pass and the general fused pass give the same statistics.

    The tanh pass resolves each responsibility to ~eps absolutely, so each sum
    carries ~eps per point of the total weight times the size of the summand.
    """
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.standard_normal(700), DTYPE)
    w = jnp.asarray(rng.integers(0, 3, 700), DTYPE) if weighted else None
    p = MixtureParams(*(jnp.asarray(f, DTYPE) for f in ([0.3, 0.7], [-0.8, 0.6], [0.7, 1.1])))
    fast = two_component_stats(x, p, w, data_moments(x, w), second_moments=free_scales, loglik=True)
    slow = sufficient_stats(x, p, w, second_moments=free_scales)
    total = float(jnp.sum(w)) if weighted else x.size
    big = float(jnp.max(jnp.abs(x))) + 1.0
    atol = 16 * EPS * total * big ** 2
    for name in ("count", "first", "second"):
        np.testing.assert_allclose(np.asarray(getattr(fast, name)), np.asarray(getattr(slow, name)),
                                   rtol=0, atol=atol, err_msg=name)
    np.testing.assert_allclose(float(fast.loglik), float(slow.loglik), rtol=rtol_for(x.size) * 8)


@pytest.mark.parametrize("name,truth,start,kw,_", models("scales-known", "k3-one-weight-fixed"))
def test_several_em_steps_per_loop_trip_give_the_one_step_loop_s_fits(name, truth, start, kw, _):
    # Accelerators take several EM steps per trip of the while loop (each trip
    # costs a device-to-host copy of its predicate); the further steps are
    # masked to the fits still running, so every fit's iterations, status and
    # estimates are the one-step loop's.  Run that path here on CPU: a batch
    # whose fits stop at different iterations (with known scales, some at max_iter).
    x = jnp.asarray(draw(11, truth, batch=7), DTYPE)
    one, three = (_scheduled(x, to_params(start), rows=7, steps_per_trip=steps, tol=1e-5, max_iter=75, **kw)[0]
                  for steps in (1, 3))
    np.testing.assert_array_equal(np.asarray(three.n_iter), np.asarray(one.n_iter))
    np.testing.assert_array_equal(np.asarray(three.status), np.asarray(one.status))
    assert len(set(np.asarray(one.n_iter).tolist())) > 1, "the fits should stop at different iterations"
    # The same arithmetic compiled into another program: rounding only.
    atol = rounding_atol(np.asarray(x), int(np.max(one.n_iter)))
    for a, b in zip(as_np(three.params), as_np(one.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
