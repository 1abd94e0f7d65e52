"""Studies in blocks: offsets, merging, interruption, bounded memory, streaming (issues 17, 21).

Every block test runs one design at one chunk size (compiled once), so blocks
and the one run share their compiled program and must agree to the bit.
"""

import dataclasses
import os
import signal
import time

import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from conftest import DTYPE

M = jaxgmm.MixtureParams
TRUTH = M(jnp.asarray([0.2, 0.8], DTYPE), jnp.asarray([0.0, 5.0], DTYPE), jnp.asarray([1.0, 2 ** 0.5], DTYPE))
N, STUDY = 100, dict(fixed="scales", chunk_size=8)
SEED, REPS = 5, 40
PER_REPLICATE = ("loglik", "n_iter", "status", "permutation")


def assert_same_study(a, b):
    """Two results of the same replicates: every array, the design and the summary equal."""
    assert (a.reps, a.offset, a.n) == (b.reps, b.offset, b.n)
    assert a.design == b.design
    for f in M._fields:
        np.testing.assert_array_equal(getattr(a.estimates, f), getattr(b.estimates, f))
        np.testing.assert_array_equal(getattr(a.se, f), getattr(b.se, f))
    for name in PER_REPLICATE:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    sa, sb = a.summary(), b.summary()
    for c in sa.columns:
        np.testing.assert_allclose(sa.columns[c], sb.columns[c], rtol=1e-12, atol=1e-15, err_msg=c)


@pytest.fixture(scope="module")
def one_run():
    return jaxgmm.monte_carlo(SEED, TRUTH, N, REPS, **STUDY)


def test_blocks_with_offsets_merge_to_the_one_run(one_run):
    first = jaxgmm.monte_carlo(SEED, TRUTH, N, 12, **STUDY)
    second = jaxgmm.monte_carlo(SEED, TRUTH, N, REPS - 12, offset=12, **STUDY)
    assert second.offset == 12 and second.reps == REPS - 12
    for blocks in [(first, second), (second, first)]:  # any order
        assert_same_study(jaxgmm.merge_studies(*blocks), one_run)


def test_merge_rejects_blocks_of_other_studies_gaps_and_overlaps(one_run):
    head = jaxgmm.monte_carlo(SEED, TRUTH, N, 8, **STUDY)
    tail = jaxgmm.monte_carlo(SEED, TRUTH, N, 8, offset=16, **STUDY)
    with pytest.raises(ValueError, match=r"contiguous.*0\.\.7.*starting at 16 \(a gap\)"):
        jaxgmm.merge_studies(head, tail)
    with pytest.raises(ValueError, match=r"an overlap"):
        jaxgmm.merge_studies(one_run, tail)
    other_seed = dataclasses.replace(tail, design=dict(tail.design, seed=6, offset=8))
    with pytest.raises(ValueError, match=r"result 1 is not a block of the same study.*seed"):
        jaxgmm.merge_studies(head, other_seed)
    other_n = dataclasses.replace(tail, n=N + 1, design=dict(tail.design, n=N + 1, offset=8))
    with pytest.raises(ValueError, match=r"differ in n"):
        jaxgmm.merge_studies(head, other_n)
    with pytest.raises(TypeError, match="argument 1 must be a MonteCarloResult"):
        jaxgmm.merge_studies(head, head.summary())
    with pytest.raises(ValueError, match="at least one"):
        jaxgmm.merge_studies()


def test_interrupted_study_keeps_finished_replicates_and_resumes(one_run, ctrl_c):
    calls = []

    def stop_after_two_chunks(block):
        calls.append(block.reps)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Python raises KeyboardInterrupt here or soon after
            time.sleep(5)

    with pytest.raises(jaxgmm.StudyInterrupted) as info:
        jaxgmm.monte_carlo(SEED, TRUTH, N, REPS, on_chunk=stop_after_two_chunks, **STUDY)
    assert isinstance(info.value, KeyboardInterrupt)
    partial = info.value.partial
    assert calls == [8, 8] and partial.reps == 16 and partial.offset == 0
    assert "offset=16" in str(info.value)
    rest = jaxgmm.monte_carlo(SEED, TRUTH, N, REPS - partial.reps, offset=partial.offset + partial.reps, **STUDY)
    assert_same_study(jaxgmm.merge_studies(partial, rest), one_run)


def test_interrupt_inside_the_first_on_chunk_keeps_that_chunk():
    def stop(block):
        raise KeyboardInterrupt

    for keep in (True, False):
        with pytest.raises(jaxgmm.StudyInterrupted) as info:
            jaxgmm.monte_carlo(SEED, TRUTH, N, REPS, offset=3, on_chunk=stop, keep_replicates=keep, **STUDY)
        partial = info.value.partial
        # The chunk on_chunk was handed counts as finished: an interrupt there loses nothing computed.
        assert partial.reps == 8 and partial.offset == 3 and partial.kept == keep


def test_interrupt_before_any_chunk_gives_an_empty_partial(one_run, monkeypatch):
    import jaxgmm._study as study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "run_chunks", interrupted)
    with pytest.raises(jaxgmm.StudyInterrupted) as info:
        jaxgmm.monte_carlo(SEED, TRUTH, N, REPS, **STUDY)
    partial = info.value.partial
    assert partial.reps == 0 and partial.estimates.means.shape == (0, 2)
    monkeypatch.undo()
    assert_same_study(jaxgmm.merge_studies(partial, one_run), one_run)


def test_summary_without_kept_replicates_equals_the_kept_summary(one_run):
    lean = jaxgmm.monte_carlo(SEED, TRUTH, N, REPS, keep_replicates=False, **STUDY)
    assert lean.estimates is None and lean.status is None and not lean.kept
    for kw in (dict(), dict(level=0.9), dict(converged_only=False), dict(all_weights=True)):
        a, b = lean.summary(**kw), one_run.summary(**kw)
        assert a.names == b.names and (a.used, a.reps) == (b.used, b.reps)
        for c in b.columns:
            # Per-chunk float64 sums against one sum over all replicates.
            np.testing.assert_allclose(a.columns[c], b.columns[c], rtol=1e-10, atol=1e-14, err_msg=(kw, c))
    assert str(lean.summary()) == str(one_run.summary())
    assert lean.status_counts() == one_run.status_counts()
    assert lean.mean_n_iter == pytest.approx(one_run.mean_n_iter, rel=1e-12)
    with pytest.raises(ValueError, match="not one of the levels summed"):
        lean.summary(level=0.93)
    with pytest.raises(ValueError, match="keep_replicates=False"):
        lean.converged
    # Blocks without replicates merge too (sums add up).
    halves = [jaxgmm.monte_carlo(SEED, TRUTH, N, REPS // 2, offset=o, keep_replicates=False, **STUDY)
              for o in (0, REPS // 2)]
    merged = jaxgmm.merge_studies(*halves).summary()
    for c in merged.columns:
        np.testing.assert_allclose(merged.columns[c], one_run.summary().columns[c], rtol=1e-10, atol=1e-14)


def test_on_chunk_streams_every_block_in_order(one_run, tmp_path):
    blocks = []
    lean = jaxgmm.monte_carlo(SEED, TRUTH, N, REPS, keep_replicates=False, on_chunk=blocks.append, **STUDY)
    assert [b.offset for b in blocks] == list(range(0, REPS, 8)) and all(b.kept for b in blocks)
    assert_same_study(jaxgmm.merge_studies(*blocks), one_run)
    assert lean.reps == REPS
    # Rows streamed chunk by chunk are the one run's CSV rows.
    one_run.save(tmp_path / "all.csv")
    rows = [",".join(map(str, r)) for b in blocks for r in b.replicate_rows()]
    assert (tmp_path / "all.csv").read_text().splitlines()[1:] == rows
