"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=4 (see test_sharding.py)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxgmm
from jaxgmm import MixtureParams
from sharded_checks import same as check_same

assert jax.device_count() == 4, jax.devices()
dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
truth = MixtureParams(jnp.array([0.2, 0.8], dtype), jnp.array([0.0, 5.0], dtype), jnp.array([1.0, 2**0.5], dtype))
start = MixtureParams(jnp.array([0.5, 0.5], dtype), jnp.array([-1.0, 4.0], dtype), jnp.array([1.0, 2**0.5], dtype))


# Uneven batch (10 fits on 4 devices) with known scales.
xs = jaxgmm.sample(jax.random.key(0), truth, 500, shape=(10,))
check_same(jaxgmm.fit_sharded(xs, start, fixed="scales"), jaxgmm.fit(xs, start, fixed="scales"), "uneven batch",
           dtype)
# A second call with new data of the same shapes reuses the compiled program
# (it once built a new jit per call, compiling the whole fit every time).
from jaxgmm._sharding import _sharded_fit  # noqa: E402
from jaxgmm._spec import make_spec  # noqa: E402

from jaxgmm._controls import resolve_tuning  # noqa: E402

# 10 fits padded to 12 over 4 devices: each device runs 3 (the tuning fit_sharded resolves).
program = _sharded_fit(jaxgmm.batch_mesh(), make_spec("scales", 2), None, resolve_tuning(500, 3, dtype),
                       True, False, False)
jaxgmm.fit_sharded(xs + 1.0, start, fixed="scales", tol=1e-4)
assert program._cache_size() == 1, program._cache_size()
# Two batch axes, all free, sample weights.
xs2 = jaxgmm.sample(jax.random.key(1), truth, 300, shape=(3, 5))
w = jax.random.uniform(jax.random.key(2), xs2.shape, dtype)
check_same(jaxgmm.fit_sharded(xs2, start, sample_weight=w), jaxgmm.fit(xs2, start, sample_weight=w), "2-D batch",
           dtype)
# Restarts of one dataset: x replicated, starts sharded (7 starts, uneven).
x = xs[0]
starts = jaxgmm.init_params(jax.random.key(3), x, 2, n_starts=7)
check_same(jaxgmm.fit_sharded(x, starts), jaxgmm.fit(x, starts), "restarts", dtype)
# A subset of devices through an explicit mesh.
mesh = Mesh(np.array(jax.devices()[:2]), ("fits",))
check_same(jaxgmm.fit_sharded(xs, start, mesh=mesh), jaxgmm.fit(xs, start), "2-device mesh", dtype)
# One fit: nothing to spread, still correct.
check_same(jaxgmm.fit_sharded(x, start), jaxgmm.fit(x, start), "single fit", dtype)
# One large dataset with its observations split over the devices.
big = jaxgmm.sample(jax.random.key(4), truth, 40_000)
data_mesh = Mesh(np.array(jax.devices()), ("data",))
sharded_big = jax.device_put(big, NamedSharding(data_mesh, P("data")))
a, b = jaxgmm.fit(sharded_big, start), jaxgmm.fit(big, start)
assert int(a.status) == int(b.status) == 0
for u, v in zip(a.params, b.params):  # reduction order differs: sqrt(n) eps scale
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-4 if dtype == jnp.float32 else 1e-10)
print("OK")
