"""Sharded fits over several (CPU) devices agree with one-device fits.

Device count is fixed when JAX starts, so the checks run in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.  The three 4-device
scripts (``fit_sharded`` layouts, a sharded Monte Carlo study, and every driver
option of ``tests/test_engine_matrix.py`` through ``fit_sharded``) run in one
subprocess (``scripts/run_scripts.py``): one JAX start instead of three.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

SCRIPTS = pathlib.Path(__file__).parent / "scripts"
FOUR_DEVICE_SCRIPTS = ("sharded_fits.py", "sharded_study.py", "sharded_matrix.py")


def run_script(name, *args, timeout=300, devices=4, **env):
    full = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **env)
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=full)


@pytest.fixture(scope="module")
def four_devices():
    """``script -> (passed, its output and traceback)`` from one 4-device run."""
    out = run_script("run_scripts.py", *FOUR_DEVICE_SCRIPTS, timeout=1200)  # the three scripts' old limits
    found = {m.group(1): (m.group(2) == "OK", m.group(3)) for m in re.finditer(
        r"^=== (\S+) (OK|FAILED)\n(.*?)^=== end \1$", out.stdout, re.S | re.M)}
    missing = [s for s in FOUR_DEVICE_SCRIPTS if s not in found]
    assert not missing, f"no result for {missing}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return found


def check(four_devices, script):
    passed, output = four_devices[script]
    assert passed, output[-4000:]


def test_sharded_fits_match_single_device(four_devices):
    check(four_devices, "sharded_fits.py")


def test_sharded_monte_carlo_matches_single_device(four_devices):
    check(four_devices, "sharded_study.py")


def test_fit_sharded_takes_every_driver_over_four_devices(four_devices):
    # The driver x layout matrix of tests/test_engine_matrix.py through fit_sharded:
    # every option value (plain EM and SQUAREM, blocks and compaction), three of the
    # four combinations; the slow test below runs all four.
    check(four_devices, "sharded_matrix.py")


@pytest.mark.slow
def test_fit_sharded_takes_every_driver_over_four_devices_full_matrix():
    out = run_script("run_scripts.py", "sharded_matrix.py", timeout=1200, JAXGMM_FULL_MATRIX="1")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]


def test_two_device_study_of_thousands_of_replicates_finishes():
    # Once hung forever on a 2-core machine (see the script); a hang now fails
    # the test with subprocess.TimeoutExpired instead of stalling the suite.
    out = run_script("two_device_study.py", timeout=240, devices=2)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("OK")
