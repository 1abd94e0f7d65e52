"""Two local processes with ``jax.distributed`` (CPU backend, loopback) run the
example study; the gathered result equals a single-process run with the same key.
The processes are bounded in time and killed if they overrun.
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxgmm

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "distributed_study.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    port, out = free_port(), tmp_path / "study.npz"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    common = ["--num-processes", "2", "--coordinator", f"127.0.0.1:{port}", "--reps", "40",
              "--n", "300", "--seed", "3", "--timeout", "60"]
    procs = [subprocess.Popen([sys.executable, str(EXAMPLE), "--process-id", str(i), *common,
                               *(["--out", str(out)] if i == 0 else [])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    try:
        results = [p.communicate(timeout=180) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("distributed processes did not finish within 180 s")
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    assert "mu_1" in results[0][0]  # process 0 printed the summary

    saved = np.load(out)
    truth = jaxgmm.MixtureParams([0.2, 0.8], [0.0, 5.0], [1.0, 2**0.5])
    single = jaxgmm.monte_carlo(jax.random.key(3), truth, 300, 40, fixed="scales")
    tol = 10 * jaxgmm.default_tol(single.estimates.means.dtype)
    np.testing.assert_array_equal(saved["status"], single.status)
    for name, want in zip(jaxgmm.MixtureParams._fields, single.estimates):
        np.testing.assert_allclose(saved[f"estimates_{name}"], want, rtol=0, atol=tol)
