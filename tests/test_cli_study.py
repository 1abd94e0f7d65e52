"""``jaxgmm study`` on Ctrl-C: what finished is saved, and a resumed run completes the study
exactly; huge --reps keep bounded memory (rows streamed to .csv, running sums otherwise)."""

import csv
import json
import os
import re
import signal

import numpy as np
import pytest

from jaxgmm import _outputs, _study, cli

SMALL = ["study", "--n", "60", "--chunk-size", "10", "--no-progress"]


def interrupt_after(monkeypatch, chunks: int, before_rows: bool = False):
    """Make monte_carlo raise Ctrl-C in the CLI's chunk callback after ``chunks`` chunks
    (``before_rows``: before the CLI writes that chunk's rows)."""
    real = _study.monte_carlo

    def run(*args, on_chunk=None, **kwargs):
        seen = []

        def chunk(block):
            seen.append(block.reps)
            if before_rows and len(seen) == chunks:
                raise KeyboardInterrupt
            if on_chunk is not None:
                on_chunk(block)
            if len(seen) == chunks:
                raise KeyboardInterrupt

        return real(*args, on_chunk=chunk, **kwargs)

    monkeypatch.setattr(_study, "monte_carlo", run)


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def resume_words(err: str) -> list:
    m = re.search(r"resume with (--offset \d+ --reps \d+ --chunk-size \d+)", err)
    assert m, err
    return m.group(1).split()


def test_interrupted_csv_study_resumes_to_the_one_run_result(tmp_path, capsys, monkeypatch):
    whole = tmp_path / "whole.csv"
    assert cli.main(SMALL + ["--reps", "50", "--out", str(whole)]) == 0
    capsys.readouterr()

    with monkeypatch.context() as m:
        interrupt_after(m, 2)
        code = cli.main(SMALL + ["--reps", "50", "--out", str(tmp_path / "a.csv")])
    out, err = capsys.readouterr()
    assert code == 130
    assert "interrupted after 20 of 50 replicates; replicates 0..19 saved to" in err
    assert "20 replicates of n = 60" in out  # the finished replicates' table
    words = resume_words(err)
    assert words == ["--offset", "20", "--reps", "30", "--chunk-size", "10"]

    assert cli.main(SMALL[:3] + words[:4] + SMALL[3:] + ["--out", str(tmp_path / "b.csv")]) == 0
    first, second = rows(tmp_path / "a.csv"), rows(tmp_path / "b.csv")
    assert first[0] == second[0] and len(first) == 21 and len(second) == 31
    assert first + second[1:] == rows(whole)  # same global indices, same numbers to the bit
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.csv", "whole.csv"]


def test_file_not_the_study_says_where_to_resume(tmp_path, capsys, monkeypatch):
    interrupt_after(monkeypatch, 2, before_rows=True)  # Ctrl-C before chunk 2's rows are written
    assert cli.main(SMALL + ["--reps", "50", "--out", str(tmp_path / "a.csv")]) == 130
    err = capsys.readouterr().err
    assert len(rows(tmp_path / "a.csv")) == 11
    assert resume_words(err)[:4] == ["--offset", "10", "--reps", "40"]


@pytest.mark.parametrize("ext", [".npz", ".json"])
def test_interrupted_study_saves_the_finished_block(tmp_path, capsys, monkeypatch, ext):
    interrupt_after(monkeypatch, 1)
    target = tmp_path / f"r{ext}"
    assert cli.main(SMALL + ["--reps", "30", "--offset", "5", "--out", str(target)]) == 130
    err = capsys.readouterr().err
    assert "replicates 5..14 saved" in err and "--offset 15 --reps 20" in err
    if ext == ".npz":
        saved = np.load(target)
        assert int(saved["reps"]) == 10 and json.loads(str(saved["design"]))["offset"] == 5
    else:
        doc = json.loads(target.read_text())
        assert doc["reps"] == 10 and doc["design"]["offset"] == 5
    assert os.listdir(tmp_path) == [target.name]


def test_interrupt_before_any_replicate_saves_nothing(tmp_path, capsys, monkeypatch):
    interrupt_after(monkeypatch, 1, before_rows=True)
    assert cli.main(SMALL + ["--reps", "30", "--out", str(tmp_path / "r.csv")]) == 130
    err = capsys.readouterr().err
    assert "nothing saved" in err and "--offset 0 --reps 30" in err
    assert os.listdir(tmp_path) == []


def test_sigint_is_held_until_a_chunk_is_written(ctrl_c):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with _outputs._sigint_held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("rows written")
    assert done == ["rows written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_huge_reps_keep_no_replicates_unless_a_file_needs_them(monkeypatch, capsys):
    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs, reps=args[3])
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(_study, "monte_carlo", record)
    # 10**12 replicates: no memory check, because only running sums are kept.
    assert cli.main(["study", "--reps", "1e12", "--no-progress"]) == 130
    capsys.readouterr()
    assert seen["reps"] == 10 ** 12 and seen["keep_replicates"] is False and seen["offset"] == 0
    err = one_line(capsys, ["study", "--reps", "1e12", "--out", "r.npz"])
    assert "needs at least" in err and ".csv/.json" in err
    err = one_line(capsys, ["study", "--reps", str(2 ** 63), "--offset", "1"])
    assert "--offset + --reps must be at most" in err


def one_line(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


@pytest.mark.slow
def test_real_sigint_saves_whole_chunks_and_the_resume_point(tmp_path):
    import subprocess
    import sys
    import time

    target = tmp_path / "r.csv"
    proc = subprocess.Popen([sys.executable, "-m", "jaxgmm", "study", "--n", "50", "--reps", "1e8",
                             "--chunk-size", "500", "--no-progress", "--out", str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # until the temporary file holds a chunk's rows
            parts = [p for p in tmp_path.iterdir() if p.name.endswith(".part.csv")]
            if parts and parts[0].stat().st_size > 10_000:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    table = rows(target)
    done = len(table) - 1
    assert done > 0 and done % 500 == 0
    assert [int(r[0]) for r in table[1:]] == list(range(done))
    assert f"--offset {done} --reps {10 ** 8 - done} --chunk-size 500" in err
    assert os.listdir(tmp_path) == ["r.csv"]
