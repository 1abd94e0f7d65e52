"""The comparison the multi-device scripts share (run as scripts: this folder is on sys.path)."""

import jax.numpy as jnp
import numpy as np

import jaxgmm
from jaxgmm import MixtureParams


def same(a, b, what, dtype, same_iterations=True):
    """Same fits up to rounding: another compilation may stop a fit one step
    earlier or later, which moves a parameter by less than one step, i.e. by
    less than tol data spreads (data here < 10 in size).  ``same_iterations``
    False (SQUAREM, whose step lengths follow the rounding, so its paths may
    differ): the same optimum, not the same iterations."""
    eps = float(jnp.finfo(dtype).eps)
    step = jaxgmm.default_tol(dtype) * 10
    np.testing.assert_array_equal(np.asarray(a.status), np.asarray(b.status), err_msg=what)
    if same_iterations:
        assert np.all(np.abs(np.asarray(a.n_iter) - np.asarray(b.n_iter)) <= 1), what
    for name, u, v in zip(type(a.params)._fields, a.params, b.params):
        assert u.shape == v.shape, (what, name, u.shape, v.shape)
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e3 * eps, atol=step + 1e3 * eps,
                                   err_msg=f"{what}: {name}")
    np.testing.assert_allclose(np.asarray(a.loglik), np.asarray(b.loglik), rtol=1e3 * eps, err_msg=what)
