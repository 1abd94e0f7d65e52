"""Running a compiled chunk of replicates over a whole study.

A study or bootstrap is a function of ``(key, replicate index)`` compiled for
one chunk of replicates; this module checks the run's arguments, turns global
replicate indices into keys, runs the chunks one after the other (optionally
with each chunk spread over a device mesh, or the replicates shared among the
processes of a multi-process JAX job) and hands each finished chunk to the
caller as NumPy arrays.

Replicate indices are global: replicate ``g`` of a study uses
``fold_in(key, g)`` for ``g < 2**32``, as it always did, and
``fold_in(fold_in(key, g mod 2**32), g // 2**32)`` above, so indices never wrap
(``fold_in`` takes 32-bit data) and any block of a study, run anywhere, sees the
same keys as the whole study.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

import jax
import jax.numpy as jnp

from ._params import Array

# Global replicate indices run over [0, MAX_REPLICATES): they fit in an int64
# (NumPy, JSON) and as two 32-bit words in fold_in.
MAX_REPLICATES = 2 ** 63
# Observations per simulated dataset: JAX indexes arrays with int32.
MAX_N = 2 ** 31 - 1

# Elements of simulated data per chunk when the chunk size is automatic: on CPU
# 2**24 float32 values (64 MiB, a few times that with the fit's and the Hessian's
# temporaries); accelerators get 4 times more, to keep them busy.
_AUTO_CHUNK_ELEMENTS = 2 ** 24
_AUTO_CHUNK_ELEMENTS_ACCELERATOR = 2 ** 26


# --------------------------------------------------------------------------- #
# Arguments
# --------------------------------------------------------------------------- #
def check_count(value, name: str, *, minimum: int = 1, maximum: int = MAX_REPLICATES) -> int:
    """``value`` as an int in ``[minimum, maximum]``; a clear error naming ``name`` otherwise.

    Integer-valued floats (``1e4``) are accepted, as before; ``None``, bools,
    strings and fractions are a ``TypeError``/``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if isinstance(value, (float, np.floating)) and (not np.isfinite(value) or int(value) != value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not minimum <= int(value) <= maximum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind} of at most {maximum:,}, got {int(value):,}")
    return int(value)


def as_key(key) -> Array:
    """A ``jax.random`` key from a key or an integer seed; ``TypeError`` otherwise.

    Accepts a typed key (``jax.random.key``, shape ``()``), a raw ``uint32`` key
    of shape ``(2,)`` (``jax.random.PRNGKey``) or an integer seed in
    ``[-2**63, 2**63)``.
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not -2 ** 63 <= int(key) < 2 ** 63:
            raise ValueError(f"key: an integer seed must lie in [-2**63, 2**63), got {int(key)}")
        return jax.random.key(int(key))
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()) or ())
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"key must be one key (shape ()), got a key array of shape {shape}")
        return key
    if dtype is not None and np.dtype(dtype) == np.uint32 and shape == (2,):
        return jnp.asarray(key)
    raise TypeError(f"key must be a jax.random key or an integer seed, got {type(key).__name__} {key!r}")


def key_words(key) -> list:
    """The key's data as plain ints (JSON-friendly; identifies the study)."""
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return [int(v) for v in np.asarray(data).reshape(-1)]


def as_indices(indices, name: str = "indices") -> np.ndarray:
    """Replicate indices as a 1-D ``uint64`` array; non-integers and negatives are errors."""
    a = np.asarray(indices)
    if a.dtype == object or a.dtype.kind not in "iu":
        if a.size == 0 and a.dtype.kind == "f":
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integer replicate indices, got dtype {a.dtype}")
    a = a.reshape(-1)
    if a.size and (a.min() < 0 or int(a.max()) >= MAX_REPLICATES):
        raise ValueError(f"{name} must lie in [0, 2**63), got values from {int(a.min())} to {int(a.max())}")
    return a.astype(np.uint64)


def index_words(indices: np.ndarray) -> tuple[Array, Array]:
    """Low and high 32-bit words of global replicate indices, each ``uint32`` ``(c,)``."""
    g = np.asarray(indices, np.uint64)
    return (jnp.asarray((g & np.uint64(0xFFFFFFFF)).astype(np.uint32)),
            jnp.asarray((g >> np.uint64(32)).astype(np.uint32)))


def replicate_keys(key, lo: Array, hi: Array) -> tuple[Array, Array]:
    """Data keys and start keys ``(c,)`` of the replicates with index words ``lo``, ``hi``.

    ``fold_in(key, lo)`` alone below 2**32 (the stream of earlier versions);
    the high word is folded in on top only where it is not zero.
    """
    base = jax.vmap(lambda i: jax.random.fold_in(key, i))(lo)
    high = jax.vmap(jax.random.fold_in)(base, hi)
    low_only = (hi == 0).reshape(hi.shape + (1,) * (base.ndim - 1))  # raw keys carry a (2,) axis
    keys = jnp.where(low_only, base, high)
    split = jax.vmap(jax.random.split)(keys)
    return split[:, 0], split[:, 1]


# --------------------------------------------------------------------------- #
# Chunks, devices, processes
# --------------------------------------------------------------------------- #
def auto_chunk(n: int, reps: int, starts: int) -> int:
    """Replicates per chunk: about a fixed number of simulated values per chunk."""
    budget = _AUTO_CHUNK_ELEMENTS if jax.default_backend() == "cpu" else _AUTO_CHUNK_ELEMENTS_ACCELERATOR
    return int(max(1, min(reps, budget // max(1, n * max(1, starts)))))


def device_name() -> str:
    d = jax.devices()[0]
    kind = getattr(d, "device_kind", "") or ""
    return f"{d.platform}" + (f" ({kind})" if kind and kind.lower() != d.platform else "")


def struct(tree):
    """Hashable shape/dtype description of a pytree of arrays."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(a.shape), a.dtype) for a in leaves)


def abstract(s):
    """The ``ShapeDtypeStruct`` pytree a :func:`struct` describes."""
    return jax.tree_util.tree_unflatten(s[0], [jax.ShapeDtypeStruct(sh, dt) for sh, dt in s[1]])


def study_mesh(mesh, devices):
    """The 1-D mesh to spread each chunk over, or ``None`` for one device."""
    if mesh is not None and devices is not None:
        raise ValueError("pass either mesh or devices, not both")
    if mesh is not None:
        if len(mesh.axis_names) != 1:
            raise ValueError(f"monte_carlo needs a 1-D mesh, got axes {mesh.axis_names}")
        return mesh
    if devices is None:
        return None
    from ._sharding import batch_mesh

    return batch_mesh(jax.local_devices() if isinstance(devices, str) and devices == "all" else devices)


def process_share(reps: int) -> tuple[int, int]:
    """This process's contiguous block ``[first, first + count)`` of ``reps`` replicates."""
    per = -(-reps // jax.process_count())
    first = min(reps, jax.process_index() * per)
    return first, min(per, reps - first)


def gather_processes(out: dict, count: int, reps: int) -> dict:
    """All-gather every process's block of per-replicate outputs, in replicate order."""
    from jax.experimental import multihost_utils

    per = -(-reps // jax.process_count())
    counts = [min(per, max(0, reps - p * per)) for p in range(jax.process_count())]

    def gather(a):
        padded = np.zeros((per,) + a.shape[1:], a.dtype)
        padded[:count] = a
        everyone = np.asarray(multihost_utils.process_allgather(padded))  # (processes, per, ...)
        return np.concatenate([everyone[p, :c] for p, c in enumerate(counts)])

    return jax.tree_util.tree_map(gather, out)


def run_chunks(compiled: Callable, key, first: int, total: int, chunk: int, *,
               progress: Optional[bool], desc: str, consume: Callable) -> None:
    """Run ``compiled(key, lo, hi)`` over global replicates ``first .. first + total - 1``.

    ``ceil(total / chunk)`` calls; each chunk's outputs (NumPy, leading axis the
    chunk's replicates) go to ``consume(start, piece)`` in replicate order,
    ``start`` the global index of its first replicate. The last chunk is padded
    to the full chunk size (one compiled shape) and the padding dropped. The
    next chunk is dispatched before the previous one is copied back, so the
    device never waits on the host. A ``KeyboardInterrupt`` (also one raised by
    ``consume``) propagates after every chunk handed to ``consume`` so far.
    """
    from tqdm import tqdm

    starts = range(first, first + total, chunk)
    show = (len(starts) > 1) if progress is None else bool(progress)
    bar = tqdm(total=total, desc=desc, unit="fit", disable=None if show else True, leave=False)
    pending = None

    def collect(item):
        start, out, count = item
        host = jax.tree_util.tree_map(lambda a: np.asarray(a)[:count], out)
        bar.update(count)
        consume(start, host)

    try:
        for s in starts:
            lo, hi = index_words(np.arange(chunk, dtype=np.uint64) + np.uint64(s))
            out = compiled(key, lo, hi)
            if pending is not None:
                collect(pending)
            pending = (s, out, min(chunk, first + total - s))
        if pending is not None:
            collect(pending)
    finally:
        bar.close()


def concatenate(pieces: list):
    """Pieces of per-replicate outputs joined along the replicate axis."""
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *pieces)
