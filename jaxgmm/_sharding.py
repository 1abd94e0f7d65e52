"""Spreading fits over devices with JAX's own machinery (meshes, ``shard_map``).

Two ways to use several devices (all the local GPUs, CPU devices made with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``, or every device of a
``jax.distributed`` job):

* **Many fits** — :func:`fit_sharded` splits the batch axis over a 1-D mesh. Each
  device runs its own ``while_loop`` over its share (``shard_map``), so a slow fit
  on one device never makes the others iterate, and no collective runs per
  iteration. Uneven batches are padded with copies of the last fit and the
  padding dropped.
* **One huge dataset** — place ``x`` with a sharding over its observation axis,
  e.g. ``jax.device_put(x, NamedSharding(mesh, P("data")))``, and call
  :func:`jaxgmm.fit` as usual: XLA partitions the E-pass so every device reduces
  its own part and only the ``O(K)`` sufficient statistics are all-reduced.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._batching import batch_shape_of
from ._controls import resolve_tuning
from ._engine import solve
from ._fit import family_of, loglik_in_weight_units, prepare, with_fixed_values
from ._mv_params import MultivariateParams
from ._params import FitResult
from ._multivariate import PARAM_EVENT_NDIMS
from ._xla import jit

BATCH_AXIS = "batch"


def batch_mesh(devices: Optional[Sequence[jax.Device]] = None, axis_name: str = BATCH_AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices, of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return Mesh(devices, (axis_name,))


def _flatten_batch(arg, core_ndim, batch: tuple, padded: int):
    """Reshape an argument with the full batch shape to ``(padded, *core)``;
    ``core_ndim``: the axes after the batch axes (an int, or a tree of them
    matching ``arg``'s leaves).

    Returns ``(array_or_tree, sharded)``; arguments without batch axes stay as they
    are and are replicated on every device (one dataset fitted from many starts is
    not copied per start on the host, only once per device).
    """
    if arg is None:
        return None, False
    cores = core_ndim if isinstance(core_ndim, tuple) else jax.tree_util.tree_map(lambda _: core_ndim, arg)
    own = tuple(jnp.broadcast_shapes(*(a.shape[:a.ndim - c] for a, c in
                                       zip(jax.tree_util.tree_leaves(arg), jax.tree_util.tree_leaves(cores)))))
    if math.prod(own) == 1:
        return jax.tree_util.tree_map(lambda a, c: a.reshape(a.shape[a.ndim - c:]), arg, cores), False
    size = math.prod(batch)

    def flat(a, core_ndim):
        a = jnp.broadcast_to(a, batch + a.shape[a.ndim - core_ndim:])
        a = a.reshape((size,) + a.shape[len(batch):])
        # Pad with copies of the last fit: valid inputs, so the padding cannot
        # produce warnings or NaN; it is dropped afterwards.
        return jnp.concatenate([a, jnp.repeat(a[-1:], padded - size, axis=0)]) if padded > size else a

    return jax.tree_util.tree_map(flat, arg, cores), True


@functools.lru_cache(maxsize=64)
def _sharded_fit(mesh: Mesh, spec, accelerate, tuning, x_sharded: bool, w_sharded: bool, init_sharded: bool):
    """The jitted ``shard_map`` of the fit for one mesh, model, engine options and sharding pattern.

    Built once per pattern and reused: a new ``jax.jit`` object per call would
    trace and compile the whole fit again on every call.
    """
    axis = mesh.axis_names[0]
    part = lambda sharded: P(axis) if sharded else P()

    def local(x_, w_, p_, ctl_):
        result, _ = solve(x_, w_, p_, ctl_, family=family_of(spec, tuning), accelerate=accelerate,
                          tuning=tuning)
        return with_fixed_values(result, p_, None, spec)

    return jit(jax.shard_map(
        local, mesh=mesh,
        in_specs=(part(x_sharded), part(w_sharded), part(init_sharded), P()),
        out_specs=P(axis), check_vma=False))


def fit_sharded(x, init, *, mesh: Optional[Mesh] = None,
                devices: Optional[Sequence[jax.Device]] = None, **fit_kwargs) -> FitResult:
    """:func:`jaxgmm.fit` with the batch spread over several devices.

    Args:
      x, init: as for :func:`jaxgmm.fit` (univariate or multivariate); their
        batch shapes broadcast.
      mesh: a 1-D :class:`jax.sharding.Mesh` to spread the fits over; by default
        one over ``devices``.
      devices: devices for the default mesh (default: ``jax.devices()``).
      **fit_kwargs: every other option of :func:`jaxgmm.fit` (``accelerate`` and
        ``compact`` included), with the same checks; each device schedules its
        own share of the fits.

    Returns:
      The same :class:`FitResult` as ``fit`` (up to float rounding of a different
      compilation), with the broadcast batch shape, its arrays sharded over the
      mesh along the flattened batch.
    """
    if mesh is None:
        mesh = batch_mesh(devices)
    elif devices is not None:
        raise ValueError("pass either mesh or devices, not both")
    if len(mesh.axis_names) != 1:
        raise ValueError(f"fit_sharded needs a 1-D mesh, got axes {mesh.axis_names}")
    n_dev = mesh.devices.size
    args = prepare(x, init, **fit_kwargs)
    x, weight, init = args.x, args.sample_weight, args.init
    family = family_of(args.spec, args.tuning)
    # Axes of one dataset, and of each parameter field, after the batch axes.
    x_core = family.event_ndim
    init_core = PARAM_EVENT_NDIMS if isinstance(init, MultivariateParams) else 1
    batch = tuple(jnp.broadcast_shapes(batch_shape_of(x, x_core), family.batch_shape(init),
                                       batch_shape_of(weight, 1) if weight is not None else ()))
    size = math.prod(batch)
    padded = -(-size // n_dev) * n_dev
    # Each device runs its own share: the engine's blocks are sized for it.
    row_length = math.prod(x.shape[x.ndim - x_core:])
    args = args._replace(tuning=resolve_tuning(row_length, padded // n_dev, x.dtype, fit_kwargs.get("compact")))
    x, x_sh = _flatten_batch(x, x_core, batch, padded)
    weight, w_sh = _flatten_batch(weight, 1, batch, padded)
    init, i_sh = _flatten_batch(init, init_core, batch, padded)
    if not (x_sh or w_sh or i_sh):  # a single fit: nothing to spread
        init = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (padded,) + a.shape), init)
        i_sh = True

    run = _sharded_fit(mesh, args.spec, args.accelerate, args.tuning, x_sh, w_sh, i_sh)
    out = run(x, weight, init, args.controls)
    out = jax.tree_util.tree_map(lambda a: a[:size].reshape(batch + a.shape[1:]), out)
    return out._replace(loglik=loglik_in_weight_units(out.loglik, args.weight_exp), model=args.spec)


def data_sharding(mesh: Mesh, axis_name: Optional[str] = None) -> NamedSharding:
    """Sharding that splits the observation (last) axis of one dataset over ``mesh``."""
    return NamedSharding(mesh, P(axis_name or mesh.axis_names[0]))
