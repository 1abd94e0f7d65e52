"""The ``jaxgmm`` command, end to end: in-process through ``cli.main(argv)``, and in
subprocesses where the process boundary is the point (exit status and stderr, the
compilation cache set from the environment, ``--float64`` set before JAX starts)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import X64
from jaxgmm import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "jaxgmm", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def textbook_file(tmp_path_factory):
    rng = np.random.default_rng(11)
    z = rng.random(1000) < 0.2
    x = np.where(z, rng.normal(0.0, 1.0, 1000), rng.normal(5.0, np.sqrt(2.0), 1000))
    folder = tmp_path_factory.mktemp("data")
    np.save(folder / "x.npy", x)
    with open(folder / "x.csv", "w") as fh:
        fh.write("# textbook sample\nid,value\n")
        for i, v in enumerate(x):
            fh.write(f"{i},{float(v)!r}\n")
        fh.write("1000,NA\n")
    return folder, x


def test_study_end_to_end_with_plot_and_output(tmp_path, capsys):
    # In-process (the process boundary has its own tests below: an exit status and
    # stderr, the compilation cache, a whole fit). The design is the one of
    # test_cli_outputs' and test_cli_study's studies (n = 60, chunks of 10), so
    # the suite compiles that study program once.
    try:
        import matplotlib  # noqa: F401
        plot = ["--plot", str(tmp_path / "study.png")]
    except ImportError:
        plot = []
    code = cli.main(["study", "--reps", "20", "--n", "60", "--chunk-size", "10", "--seed", "3", "--no-progress",
                     "--out", str(tmp_path / "study.json"), *plot])
    out, err = capsys.readouterr()
    assert code == 0, err
    text = out
    assert "20 replicates of n = 60" in text
    for name in ("pi_1", "mu_1", "mu_2", "MCSE(bias)", "cover95", "fits/s"):
        assert name in text
    assert "sigma_1" in text.split("\n")[1]  # listed as fixed, not estimated
    doc = json.loads((tmp_path / "study.json").read_text())
    assert doc["n"] == 60 and doc["reps"] == 20
    assert [r["parameter"] for r in doc["summary"]["rows"]] == ["pi_1", "mu_1", "mu_2"]
    if plot:
        data = (tmp_path / "study.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


# --float64 switches JAX to float64 before any array exists, so under JAX_ENABLE_X64=1
# this subprocess would repeat the float32 run's computation to the bit.
@pytest.mark.skipif(X64, reason="same computation as in the float32 run (--float64 already in force)")
def test_fit_file_end_to_end_float64(textbook_file):
    folder, x = textbook_file
    out = run("fit", str(folder / "x.npy"), "--scales", f"1,{float(np.sqrt(2))!r}", "--float64", "--restarts", "4")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "n = 1000" in text and "float64" in text and "CONVERGED" in text
    assert "(fixed)" in text and "AIC" in text and "BIC" in text and "free parameters 3" in text
    # AIC printed matches 2p - 2 loglik.
    words = text.split()
    ll = float(words[words.index("log-likelihood") + 1])
    assert float(words[words.index("AIC") + 1]) == pytest.approx(2 * 3 - 2 * ll, abs=1e-3)


@pytest.mark.slow
def test_fit_csv_in_process(textbook_file, capsys):
    folder, x = textbook_file
    code = cli.main(["fit", str(folder / "x.csv"), "--column", "value", "--restarts", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 missing values dropped" in out and "n = 1000" in out and "free parameters 5" in out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith(("1 ", "2 "))]
    assert any("(" in ln for ln in lines)


def test_compile_cache_hint_only_where_no_cache_is_set():
    assert cli._compile_cache_hint(None, 2.5).startswith("compile time: 2.5 s in every run")
    assert "JAX_COMPILATION_CACHE_DIR" in cli._compile_cache_hint(None, 2.5)
    assert cli._compile_cache_hint("/some/folder", 2.5) is None
    assert cli._compile_cache_hint(None, 0.2) is None


def test_study_uses_jax_compilation_cache_when_set(tmp_path):
    cache = tmp_path / "xla-cache"
    env_vars = {"JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    env = dict(os.environ, PYTHONUNBUFFERED="1", **env_vars)
    out = subprocess.run([sys.executable, "-m", "jaxgmm", "study", "--reps", "20", "--n", "60", "--chunk-size", "10",
                          "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "compile time:" not in out.stdout  # no hint: the user has chosen
    assert any(p.name.startswith("jit__study_chunk") for p in cache.iterdir())


def test_study_with_squarem_in_process(capsys):
    code = cli.main(["study", "--reps", "40", "--n", "300", "--means", "0,1.5", "--weights", "0.3,0.7",
                     "--scales", "1,1", "--accelerate", "squarem", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "; SQUAREM;" in out and "mean E-steps" in out


def test_read_column_formats(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("# comment\n1.5\n\n2.5\nnan\n-3e2\n")
    x, dropped = cli.read_column(str(p))
    np.testing.assert_array_equal(x, [1.5, 2.5, -300.0])
    assert dropped == 1
    p = tmp_path / "b.csv"
    p.write_text("a;b\n1;2\n3;4\n")
    np.testing.assert_array_equal(cli.read_column(str(p), "b")[0], [2.0, 4.0])
    np.testing.assert_array_equal(cli.read_column(str(p), "0")[0], [1.0, 3.0])
    np.save(tmp_path / "c.npy", np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(cli.read_column(str(tmp_path / "c.npy"), "1")[0], [1.0, 3.0, 5.0])


@pytest.mark.parametrize("argv, message", [
    (["fit", "/no/such/file.txt"], "no such file"),
    (["fit", "{tmp}/two.csv"], "choose one with --column"),
    (["fit", "{tmp}/bad.txt"], "is not a number"),
    (["fit", "{tmp}/two.csv", "--column", "c"], "no such column"),
    (["fit", "{tmp}/one.txt", "-k", "2", "--means", "1,2,3"], "gives 3 values"),
    (["fit", "{tmp}/one.txt", "--scales", "1,x"], "not a number"),
    (["fit", "{tmp}/one.txt", "--weights", "0.5,0.6"], "sum to 1"),
    (["fit", "{tmp}/one.txt", "--weights", "1.2,_"], "leave some mass"),
    (["fit", "{tmp}/one.txt", "--scales", "0,_"], "positive"),
    (["study", "--reps", "0"], "positive integer"),
    (["study", "--weights", "0.5,0.6"], "sum to 1"),
    (["study", "--weights", "0.2,0.3,0.5"], "same number of components"),
    (["study", "--fixed", "tau"], "unknown parameter"),
    (["study", "--fixed", "mu3"], "component 3"),
    (["study", "--out", "r.txt"], ".npz, .csv or .json"),
    (["study", "--out", "/no/such/dir/r.npz"], "does not exist"),
    (["nonsense"], "invalid choice"),
])
def test_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "two.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "bad.txt").write_text("1\n2\nthree\n")
    (tmp_path / "one.txt").write_text("1\n2\n3\n4\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("jaxgmm: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_matplotlib_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    code = cli.main(["study", "--reps", "10", "--plot", "x.png"])
    err = capsys.readouterr().err
    assert code == 2 and "matplotlib" in err and "pip install" in err and err.count("\n") == 1


def test_subprocess_error_has_no_traceback():
    out = run("fit", "/no/such/file.txt")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert out.stdout == ""


@pytest.mark.slow
def test_fit_kmax_and_bootstrap_in_process(textbook_file, capsys):
    folder, x = textbook_file
    code = cli.main(["fit", str(folder / "x.npy"), "--kmax", "3", "--restarts", "5", "--bootstrap", "200"])
    out = capsys.readouterr().out
    assert code == 0
    assert "smallest BIC: K = 2" in out and "percentile interval" in out


@pytest.mark.slow
def test_fit_lrt_chooses_k_by_bootstrap_tests_and_tests_a_fitted_k(textbook_file, capsys):
    folder, x = textbook_file  # 0.2 N(0, 1) + 0.8 N(5, 2): two components, far apart
    code = cli.main(["fit", str(folder / "x.npy"), "--kmax", "3", "--lrt", "--lrt-reps", "19", "--restarts", "3"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line.split() for line in out.splitlines() if " vs " in line]
    # 1 vs 2 rejects with the smallest p-value 19 replicates allow; the sequence
    # then tests 2 vs 3 and the choice is K = 2 unless that test rejects too.
    assert lines[0][:3] == ["1", "vs", "2"] and float(lines[0][4]) == pytest.approx(1 / 20)
    assert lines[1][:3] == ["2", "vs", "3"]
    chosen = 2 if float(lines[1][4]) > 0.05 else 3
    assert f"bootstrap LRT at level 0.05: K = {chosen}" in out and f"K = {chosen}, best of 3" in out
    code = cli.main(["fit", str(folder / "x.npy"), "-k", "2", "--lrt", "--lrt-reps", "19", "--restarts", "3"])
    out = capsys.readouterr().out
    assert code == 0 and "K = 2, best of 3" in out
    assert [line.split()[:3] for line in out.splitlines() if " vs " in line] == [["2", "vs", "3"]]


@pytest.mark.parametrize("name, argv, message", [
    ("x.npy", ["--lrt", "--means", "0,_"], "--lrt tests models with every parameter free"),
    ("x.npy", ["--lrt", "--lrt-alpha", "1.5"], "--lrt-alpha must lie strictly between 0 and 1"),
    ("x.npy", ["--lrt", "--kmax", "1"], "--kmax needs KMAX >= 2"),
    ("x.csv", ["--lrt", "--group-by", "id"], "--lrt is not available with --group-by"),
])
def test_fit_lrt_refuses_what_it_cannot_test(textbook_file, capsys, name, argv, message):
    folder, _ = textbook_file
    assert cli.main(["fit", str(folder / name), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_fit_plot_is_written_after_the_fit_and_checked_before(textbook_file, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    folder, x = textbook_file
    target = tmp_path / "fit.png"
    code = cli.main(["fit", str(folder / "x.npy"), "--restarts", "2", "--plot", str(target)])
    assert code == 0 and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot of the fit written to {target}" in capsys.readouterr().out
    # An existing file is kept without --force, and a bad extension fails before any fit runs.
    import jaxgmm._fit
    monkeypatch.setattr(jaxgmm._fit, "fit", lambda *a, **k: pytest.fail("the fit ran"))
    for argv, message in [(["--plot", str(target)], "exists"), (["--plot", str(tmp_path / "fit.txt")], "must end in")]:
        assert cli.main(["fit", str(folder / "x.npy"), *argv]) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.glob(".fit*"))  # no temporary files left behind
