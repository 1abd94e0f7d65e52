"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=2 (see test_sharding.py).

A study of thousands of replicates spread over two CPU devices once waited
forever, using no CPU: the observed-information Hessian ran as one vmap over the
whole batch, and on a 2-core machine the two devices' programs starved each other
of XLA:CPU's worker threads.  It now runs in cache-sized blocks; this must finish.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxgmm

assert jax.device_count() == 2, jax.devices()
truth = jaxgmm.MixtureParams(jnp.array([0.2, 0.8]), jnp.array([0.0, 5.0]), jnp.array([1.0, 2**0.5]))
res = jaxgmm.monte_carlo(0, truth, 1000, 8000, fixed="scales", devices="all")
assert np.all(np.isfinite(np.asarray(res.se.means))), "non-finite standard errors"

xs = jaxgmm.sample(jax.random.key(1), truth, 1000, shape=(8000,))
fits = jaxgmm.fit_sharded(xs, truth, fixed="scales")
se = jaxgmm.standard_errors(xs, fits, fixed="scales")
assert np.all(np.isfinite(np.asarray(se.means)))
print("OK")
