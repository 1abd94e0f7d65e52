"""No lost work, no crash: outputs checked before the study, written atomically; limits and
option edges give one line and exit status 2."""

import os
import stat

import numpy as np
import pytest

from jaxgmm import _outputs, _study, cli


@pytest.fixture
def no_study(monkeypatch):
    """Any study that starts fails the test: the error must come before the work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the study ran before the error")

    monkeypatch.setattr(_study, "monte_carlo", refuse)


def one_line_error(capsys, argv) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("jaxgmm: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


# --------------------------------------------------------------------------- #
# Outputs fail before the study runs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("option, path, message", [
    ("--out", "", "empty file name"),
    ("--out", "   ", "empty file name"),
    ("--out", "{tmp}", "is a folder"),
    ("--out", "{tmp}/", "is a folder"),
    ("--out", "{tmp}/r.txt", "must end in .npz, .csv or .json, got .txt"),
    ("--out", "{tmp}/r", "got no extension"),
    ("--out", "{tmp}/missing/r.npz", "does not exist"),
    ("--out", "/proc/jaxgmm-test.npz", "cannot write in folder"),  # unwritable even for root
    ("--out", "{tmp}/old.json", "exists; pass --force"),
    ("--plot", "{tmp}/p.xyz", "must end in"),
    ("--plot", "{tmp}/old.png", "exists; pass --force"),
])
def test_bad_outputs_fail_before_the_study(tmp_path, capsys, no_study, option, path, message):
    pytest.importorskip("matplotlib")
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "old.png").write_bytes(b"png")
    err = one_line_error(capsys, ["study", option, path.replace("{tmp}", str(tmp_path))])
    assert message in err and option in err
    assert sorted(os.listdir(tmp_path)) == ["old.json", "old.png"]  # no temporary file left


def test_an_existing_device_is_never_replaced(tmp_path):
    with pytest.raises(_outputs.OutputError, match="not a regular file"):
        _outputs.OutputFile("--out", "/dev/null", ("",), force=True)


# --------------------------------------------------------------------------- #
# Atomic writes
# --------------------------------------------------------------------------- #
def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    out = _outputs.OutputFile("--out", str(target), (".json",), force=True)
    assert len(os.listdir(tmp_path)) == 2  # the temporary file exists from the start

    def half_then_fail(path):
        with open(path, "w") as fh:
            fh.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        out.write(half_then_fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


def test_write_replaces_with_the_usual_permissions(tmp_path):
    target = tmp_path / "R.NPZ"
    out = _outputs.OutputFile("--out", str(target), (".npz",))
    out.write(lambda path: np.savez(path, a=np.arange(3)))  # the temporary name ends in .npz
    assert os.listdir(tmp_path) == ["R.NPZ"]
    np.testing.assert_array_equal(np.load(target)["a"], [0, 1, 2])
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~mask


def test_interrupted_study_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_study, "monte_carlo", interrupted)
    assert cli.main(["study", "--out", str(tmp_path / "r.npz")]) == 130
    assert os.listdir(tmp_path) == []


def test_study_force_overwrites_atomically(tmp_path, capsys):
    target = tmp_path / "r.json"
    target.write_text("old")
    code = cli.main(["study", "--reps", "20", "--n", "60", "--chunk-size", "10", "--no-progress", "--out", str(target),
                     "--force"])
    assert code == 0, capsys.readouterr().err
    assert '"reps": 20' in target.read_text() and os.listdir(tmp_path) == ["r.json"]


# --------------------------------------------------------------------------- #
# Limits and option edges: one line, before any work
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("argv, message", [
    (["study", "--n", "3000000000"], "--n: must be at most 2147483647"),
    (["study", "--seed", str(2 ** 64)], "--seed: must be at most 4294967295"),
    (["study", "--seed", str(2 ** 32)], "--seed: must be at most 4294967295"),
    (["study", "--reps", "1e19"], "--reps: must be at most 9223372036854775808"),
    (["study", "--offset", "-1"], "--offset: must be >= 0, got -1"),
    (["study", "--reps", "4e9", "--out", "{tmp}/r.npz"], "needs at least"),
    (["study", "--n", "2e9", "--chunk-size", "1000"], "needs at least"),
    (["study", "--starts", "1e9", "--init", "kmeans++"], "--starts: must be at most 100000"),
    (["study", "--reps", "1.5"], "'1.5' is not an integer"),
    (["study", "--reps", "-5"], "must be a positive integer, got -5"),
    (["study", "--means", "-1,-5", "--weights", "-0.2,1.2"], "--weights and --scales must be positive"),
    (["study", "--means", "-inf,5"], "'-inf' is not a finite number"),
    (["fit", "{tmp}/one.txt", "--restarts", "1e8"], "--restarts: must be at most 100000"),
    (["fit", "{tmp}/one.txt", "--bootstrap", "4e9"], "needs at least"),
    (["fit", "{tmp}/one.txt", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    (["fit", "/dev/zero"], "NUL byte"),
    (["fit", "{tmp}/huge.txt"], "beyond float32's range"),
    (["fit", "{tmp}/one.txt", "--decimal", ";"], "invalid choice"),
])
def test_limits_are_one_line_errors(tmp_path, capsys, no_study, argv, message):
    (tmp_path / "one.txt").write_text("1\n2\n3\n4\n")
    (tmp_path / "huge.txt").write_text("1\n2\n1e39\n")
    err = one_line_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert message in err


def test_big_restarts_are_refused_by_memory_before_fitting(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_memory_bytes", lambda: (10 ** 6, "a small device"))
    np.save(tmp_path / "x.npy", np.arange(10_000.0))
    err = one_line_error(capsys, ["fit", str(tmp_path / "x.npy"), "--restarts", "1000"])
    assert "needs at least" in err and "a small device" in err and "fewer --restarts" in err


def test_memory_errors_are_one_line(tmp_path, capsys, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cli, "read_column", no_memory)
    err = one_line_error(capsys, ["fit", str(tmp_path / "x.npy")])
    assert "out of memory" in err


@pytest.mark.parametrize("argv, attached", [
    (["study", "--means", "-1,5"], ["study", "--means=-1,5"]),
    (["study", "--mean", "-1,5"], ["study", "--mean=-1,5"]),           # abbreviated
    (["fit", "f.txt", "--means", "-.5,_", "-k", "-2"], ["fit", "f.txt", "--means=-.5,_", "-k=-2"]),
    (["fit", "f.txt", "--float64", "-1"], ["fit", "f.txt", "--float64", "-1"]),  # a flag takes no value
    (["study", "--means=-1,5"], ["study", "--means=-1,5"]),
    (["fit", "--", "--means", "-1"], ["fit", "--", "--means", "-1"]),
])
def test_negative_values_attach_to_their_option(argv, attached):
    cli.build_parser()
    assert cli._attach_negative_values(argv) == attached


def test_negative_means_are_parsed(monkeypatch):
    parser = cli.build_parser()
    args = parser.parse_args(cli._attach_negative_values(["study", "--means", "-1,5", "--weights", "0.5,0.5"]))
    assert args.means == "-1,5"
    assert cli._floats(args.means, "--means") == [-1.0, 5.0]


@pytest.mark.parametrize("text, value", [("1e6", 10 ** 6), ("2.5e1", 25), ("1_000", 1000),
                                         ("7", 7), ("1.5", None), ("1e-2", None), ("2**8", None)])
def test_integers_in_exponent_notation(text, value):
    assert cli._integer(text) == value
