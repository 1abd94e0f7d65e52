"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=4 (tests/test_engine_matrix.py).

``fit_sharded`` with every driver option gives ``fit``'s result with the same
option: broadcast restarts (7 datasets x 2 starts, uneven over 4 devices) and
padded datasets, each device scheduling its own share.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxgmm
from jaxgmm import MixtureParams

assert jax.device_count() == 4, jax.devices()
dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
eps = float(jnp.finfo(dtype).eps)
truth = MixtureParams(jnp.array([0.2, 0.8], dtype), jnp.array([0.0, 5.0], dtype), jnp.array([1.0, 2**0.5], dtype))
starts = MixtureParams(jnp.array([[0.5, 0.5], [0.4, 0.6]], dtype), jnp.array([[-1.0, 4.0], [1.0, 6.0]], dtype),
                       jnp.array([[1.0, 1.0], [2.0, 1.0]], dtype))
restarts = jax.tree.map(lambda f: jnp.broadcast_to(f[:, None], (2, 7, 2)), starts)
xs = jaxgmm.sample(jax.random.key(0), truth, 300, shape=(7,))
w = (jnp.arange(300) < jnp.array([300, 250, 200, 300, 150, 280, 220])[:, None]).astype(dtype)


def same(a, b, what, plain_em):
    """Same fits up to rounding: another compilation (each device's blocks are
    its share's size) may stop a fit a step earlier or later, which moves a
    parameter by less than tol data spreads (data of size < 10; EM contracts
    fast on this well-separated model).  SQUAREM's step lengths follow the
    rounding too, so its paths may differ: the same optimum, not the same
    iterations."""
    step = jaxgmm.default_tol(dtype) * 10
    np.testing.assert_array_equal(np.asarray(a.status), np.asarray(b.status), err_msg=what)
    if plain_em:
        assert np.all(np.abs(np.asarray(a.n_iter) - np.asarray(b.n_iter)) <= 1), what
    for name, u, v in zip(MixtureParams._fields, a.params, b.params):
        assert u.shape == v.shape, (what, name, u.shape, v.shape)
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e3 * eps, atol=step + 1e3 * eps,
                                   err_msg=f"{what}: {name}")
    np.testing.assert_allclose(np.asarray(a.loglik), np.asarray(b.loglik), rtol=1e3 * eps, err_msg=what)


for accelerate in (None, "squarem"):
    for compact in (False, True):
        kw = dict(accelerate=accelerate, compact=compact)
        plain_em = accelerate is None
        one = MixtureParams(*(f[0] for f in starts))
        same(jaxgmm.fit_sharded(xs, restarts, **kw), jaxgmm.fit(xs, restarts, **kw), f"restarts {kw}", plain_em)
        same(jaxgmm.fit_sharded(xs, one, sample_weight=w, **kw), jaxgmm.fit(xs, one, sample_weight=w, **kw),
             f"padded {kw}", plain_em)
print("OK")
