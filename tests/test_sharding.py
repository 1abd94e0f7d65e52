"""Sharded fits over several (CPU) devices agree with one-device fits.

Device count is fixed when JAX starts, so the checks run in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import os
import pathlib
import subprocess
import sys

SCRIPTS = pathlib.Path(__file__).parent / "scripts"


def run_script(name, timeout=300, **env):
    full = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", **env)
    return subprocess.run([sys.executable, str(SCRIPTS / name)], capture_output=True, text=True,
                          timeout=timeout, env=full)


def test_sharded_fits_match_single_device():
    out = run_script("sharded_fits.py")
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("OK")


def test_sharded_monte_carlo_matches_single_device():
    out = run_script("sharded_study.py")
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("OK")
