"""One very large dataset, reduced in chunks of observations.

The loop's passes over the data are sums over observations, and XLA materialises
an intermediate that several sums share (the ``tanh`` of the two-component pass;
see ``_em._REDUCTION``): for one dataset of 10^8 points that is arrays of the
data's size per iteration.  :class:`ChunkedData` stands in for the standardised data of
such a dataset: every pass runs over consecutive chunks (``lax.dynamic_slice`` of
the user's array, standardised in cache) and adds up the chunks' statistics, so
the temporaries are chunk-sized whatever ``n`` is.

Every statistic is a sum over observations, so chunk sums add up to the full sum
-- provided each chunk uses its *own* data moments in the two-component pass
(whose counts are ``(sum w -/+ sum w t) / 2``).  The last chunk is shifted back to
end at the last observation; the observations it repeats get weight 0.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from ._em import DataMoments, data_moments
from ._params import Array

# Datasets longer than LARGE_N are reduced in chunks of observations.  On CPU a
# chunk's data and temporaries stay in cache (CHUNK = 2^18 float32 = 1 MiB; 1.4x
# faster than 2^20 at n = 8e6); accelerators have no such cache and each chunk
# costs kernel launches, so they take chunks as long as LARGE_N (H200, one
# dataset of 2^27 points: 214 G pt-it/s, against 89 with 2^20 and 25 with 2^18;
# longer chunks run faster still but the fit holds about 11 chunk-sized
# temporaries).  The engine's chunk length is ``Tuning.chunk``
# (jaxgmm/_controls.py), resolved from these.
LARGE_N = 2 ** 22
CHUNK = 2 ** 18


def chunk_size(backend: Optional[str] = None) -> int:
    """Chunk length on ``backend`` (default: JAX's); the engine resolves it once
    per call into ``Tuning.chunk``."""
    backend = jax.default_backend() if backend is None else backend
    return CHUNK if backend == "cpu" else max(CHUNK, LARGE_N)


class ChunkedData(NamedTuple):
    """The standardised view of one large dataset, reduced chunk by chunk."""

    x: Array  # shape=(n,): the user's data, never copied
    weight: Optional[Array]  # shape=(n,) or None
    centre: Array
    spread: Array
    chunk: int

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def n_chunks(self) -> int:
        return -(-self.x.shape[-1] // self.chunk)

    def _piece(self, i, last: bool):
        """Standardised chunk ``i`` and its weights.  Without sample weights only
        the ``last`` chunk (static) has any (zeros for the observations it
        repeats); the others get ``None``, which spares a multiply per sum."""
        if self.weight is None and not last:
            xs, ws = lax.dynamic_slice_in_dim(self.x, i * self.chunk, self.chunk), None
        else:
            xs, ws = raw_chunk(self.x, self.weight, i, self.chunk)
        return (xs - self.centre) / self.spread, ws

    def _map(self, piece: Callable, combine: Callable):
        """``combine`` ``piece(i, last)`` over the chunks: all but the last in a
        compiled loop, then the last."""
        n = self.n_chunks
        if n == 1:
            return piece(0, True)
        return combine(_fold(n - 1, lambda i: piece(i, False), combine), piece(n - 1, True))

    def moments(self) -> DataMoments:
        """Each chunk's :class:`DataMoments`, stacked: fields of shape ``(n_chunks,)``."""
        stack = lambda *parts: jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)
        first = lax.map(lambda i: data_moments(*self._piece(i, False)), jnp.arange(self.n_chunks - 1))
        last = jax.tree_util.tree_map(lambda a: a[None], data_moments(*self._piece(self.n_chunks - 1, True)))
        return stack(first, last)

    def reduce(self, fn: Callable, moments: Optional[DataMoments] = None):
        """``sum over chunks of fn(x_std_chunk, weight_chunk, chunk_moments)``.

        ``fn`` returns a pytree of sums (``None`` leaves allowed); ``moments`` are
        those of :meth:`moments` (``None`` passes ``None`` to ``fn``).
        """

        def piece(i, last):
            mom = None if moments is None else jax.tree_util.tree_map(lambda a: a[i], moments)
            return fn(*self._piece(i, last), mom)

        return self._map(piece, lambda total, part: jax.tree_util.tree_map(jnp.add, total, part))


def over_data(x: Array, sample_weight: Optional[Array], fn: Callable, combine: tuple,
              chunk: Optional[int] = None):
    """``fn(x, sample_weight)``, a tuple of reductions over the observations.

    For a dataset longer than :data:`LARGE_N`, ``fn`` runs on chunks of
    :func:`chunk_size` raw observations (the repeated ones of the shifted last chunk
    weighted 0) and the chunks' results are combined leaf by leaf with
    ``combine`` (a binary function per leaf, ``None`` for ``None`` leaves), so no
    temporary of the data's size is made.
    """
    n = x.shape[-1]
    if n <= LARGE_N:
        return fn(x, sample_weight)

    chunk = chunk_size() if chunk is None else chunk
    return _fold(-(-n // chunk), lambda i: fn(*raw_chunk(x, sample_weight, i, chunk)),
                 lambda total, part: tuple(t if op is None else op(t, r) for op, t, r in zip(combine, total, part)))


def _fold(n_chunks: int, piece: Callable, combine: Callable):
    """``combine`` the results of ``piece(0)``, ..., ``piece(n_chunks - 1)`` in a compiled loop."""
    return lax.fori_loop(1, n_chunks, lambda i, total: combine(total, piece(i)), piece(0))


def raw_chunk(x: Array, weight: Optional[Array], i, chunk: int):
    """Chunk ``i`` of the observations and their weights (all ones when ``weight`` is None).

    The last chunk is shifted back to end at the last observation; the
    observations it repeats get weight 0.
    """
    n = x.shape[-1]
    start = jnp.minimum(i * chunk, n - chunk)
    xs = lax.dynamic_slice_in_dim(x, start, chunk)
    ws = jnp.ones((chunk,), x.dtype) if weight is None else lax.dynamic_slice_in_dim(weight, start, chunk)
    return xs, jnp.where(start + jnp.arange(chunk) >= i * chunk, ws, 0.0).astype(x.dtype)


def is_large(n: int) -> bool:
    """Whether a dataset of ``n`` observations is reduced in chunks (static)."""
    return n > LARGE_N


def chunked(x: Array, sample_weight: Optional[Array], centre, spread,
            chunk: Optional[int] = None) -> Optional[ChunkedData]:
    """A :class:`ChunkedData` for a dataset longer than :data:`LARGE_N`, else None."""
    if not is_large(x.shape[-1]):
        return None
    return ChunkedData(x, sample_weight, centre, spread, chunk_size() if chunk is None else chunk)
