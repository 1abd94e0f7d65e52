"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=4 (run from tests/test_sharding.py;
the matrix is tests/test_engine_matrix.py's; by default a subset of its cells, all of
them with JAXGMM_FULL_MATRIX=1).

``fit_sharded`` with every driver option gives ``fit``'s result with the same
option: broadcast restarts (7 datasets x 2 starts, uneven over 4 devices) and
padded datasets, each device scheduling its own share; and multivariate fits
(the default driver and SQUAREM, broadcast restarts and padding).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

import jaxgmm
from jaxgmm import MixtureParams
from sharded_checks import same as check_same

assert jax.device_count() == 4, jax.devices()
dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
truth = MixtureParams(jnp.array([0.2, 0.8], dtype), jnp.array([0.0, 5.0], dtype), jnp.array([1.0, 2**0.5], dtype))
starts = MixtureParams(jnp.array([[0.5, 0.5], [0.4, 0.6]], dtype), jnp.array([[-1.0, 4.0], [1.0, 6.0]], dtype),
                       jnp.array([[1.0, 1.0], [2.0, 1.0]], dtype))
restarts = jax.tree.map(lambda f: jnp.broadcast_to(f[:, None], (2, 7, 2)), starts)
xs = jaxgmm.sample(jax.random.key(0), truth, 300, shape=(7,))
w = (jnp.arange(300) < jnp.array([300, 250, 200, 300, 150, 280, 220])[:, None]).astype(dtype)


# By default the two steppers with compaction (the CPU default policy) and plain
# EM in whole-batch blocks (the accelerator default); JAXGMM_FULL_MATRIX=1 (the
# slow test) adds SQUAREM in blocks and runs the multivariate cells with both.
FULL = bool(os.environ.get("JAXGMM_FULL_MATRIX"))
cells = [(None, False), (None, True), ("squarem", True)] + ([("squarem", False)] if FULL else [])
for accelerate, compact in cells:
    kw = dict(accelerate=accelerate, compact=compact)
    plain_em = accelerate is None
    one = MixtureParams(*(f[0] for f in starts))
    check_same(jaxgmm.fit_sharded(xs, restarts, **kw), jaxgmm.fit(xs, restarts, **kw), f"restarts {kw}", dtype,
               same_iterations=plain_em)
    check_same(jaxgmm.fit_sharded(xs, one, sample_weight=w, **kw), jaxgmm.fit(xs, one, sample_weight=w, **kw),
               f"padded {kw}", dtype, same_iterations=plain_em)
# Multivariate: 5 datasets of n = 200 in D = 2, two starts broadcast over them.
mv_truth = jaxgmm.MultivariateParams(jnp.array([0.4, 0.6], dtype), jnp.array([[0.0, 0.0], [4.0, 1.0]], dtype),
                                     jnp.broadcast_to(jnp.eye(2, dtype=dtype), (2, 2, 2)))
mv_x = jaxgmm.sample(jax.random.key(1), mv_truth, 200, shape=(5,))
mv_starts = jaxgmm.init_params(jax.random.key(2), mv_x, 2, n_starts=2, covariance_type="full")
mv_w = (jnp.arange(200) < jnp.array([200, 150, 180, 120, 200])[:, None]).astype(dtype)
for accelerate in ((None, "squarem") if FULL else (None,)):
    kw = dict(accelerate=accelerate)
    check_same(jaxgmm.fit_sharded(mv_x, mv_starts, **kw), jaxgmm.fit(mv_x, mv_starts, **kw),
               f"multivariate restarts {kw}", dtype, same_iterations=accelerate is None)
    check_same(jaxgmm.fit_sharded(mv_x, mv_starts, sample_weight=mv_w, **kw),
               jaxgmm.fit(mv_x, mv_starts, sample_weight=mv_w, **kw), f"multivariate padded {kw}", dtype,
               same_iterations=accelerate is None)
print("OK")
