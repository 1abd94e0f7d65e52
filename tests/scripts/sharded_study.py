"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=4 (see test_sharding.py)."""

import jax
import numpy as np

import jaxgmm

assert jax.device_count() == 4
truth = jaxgmm.MixtureParams([0.2, 0.8], [0.0, 5.0], [1.0, 2**0.5])
one = jaxgmm.monte_carlo(jax.random.key(7), truth, 200, 30, fixed="scales", chunk_size=10)
many = jaxgmm.monte_carlo(jax.random.key(7), truth, 200, 30, fixed="scales", chunk_size=10, devices="all")
# Each replicate's data and fit are the same computation on any device; chunks of
# different shapes may round differently, so compare to the convergence tolerance.
tol = 10 * jaxgmm.default_tol(one.estimates.means.dtype)
for a, b in zip(one.estimates, many.estimates):
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)
np.testing.assert_array_equal(one.status, many.status)
assert abs(one.summary().row("mu_1")["bias"] - many.summary().row("mu_1")["bias"]) < tol
print("OK")
