"""Progress of long work: a bar on terminals, a line at a steady interval in logs (laic_core.progress)."""

from __future__ import annotations

import io
import re

import pytest

from laic_core import progress
from laic_core.progress import LogProgress, duration_text, progress_bar


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (40.4, "40 s"), (61, "1 min 1 s"), (599, "9 min 59 s"),
                                           (1125, "19 min"), (3240, "54 min"), (7830, "2 h 11 min")])
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration_text(seconds) == text


def test_a_log_gets_a_line_with_done_rate_and_time_left(monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    with LogProgress(1000, "vocab", unit="noun", interval=15, stream=out) as bar:
        bar.update(100)  # t = 10: under the interval, no line
        bar.update(300)  # t = 20: 400 nouns in 20 s
        bar.update(100)  # t = 30: 10 s since the last line, none
        bar.update(500)  # t = 40: done, no "left"
    lines = out.getvalue().splitlines()
    assert lines[0] == ("vocab: 400/1,000 nouns (40.0%), 20.0 nouns/s, 20 s elapsed, about 30 s left")
    assert lines[1].startswith("vocab: 1,000/1,000 nouns (100.0%)") and lines[1].endswith(" - done")
    assert len(lines) == 2


def test_a_budget_that_may_stop_early_says_at_most(monkeypatch):
    clock = iter([0.0, 100.0, 100.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = LogProgress(1000, "centers", unit="step", interval=1, ceiling=True, stream=out)
    bar.set_postfix(loss="0.1234")
    bar.update(250)
    assert out.getvalue() == ("centers: 250/1,000 steps (25.0%), 2.5 steps/s, 1 min 40 s elapsed, "
                              "at most 5 min 0 s left, loss 0.1234\n")


def test_short_work_prints_nothing_and_write_passes_through():
    out = io.StringIO()
    with LogProgress(10, "embed", unit="img", interval=30, stream=out) as bar:
        bar.update(10)
        bar.write("skipped a.jpg: truncated")
    assert out.getvalue() == "skipped a.jpg: truncated\n"  # no progress line, no "done" for a few seconds' work


def test_progress_bar_is_a_log_progress_where_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    monkeypatch.setenv(progress.INTERVAL_ENV, "7")
    bar = progress_bar(5, "embed", unit="img")
    assert isinstance(bar, LogProgress) and bar.interval == 7
    silent = progress_bar(5, "embed", unit="img", enabled=False)
    assert not isinstance(silent, LogProgress)  # a disabled tqdm bar: the same interface, no output
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    assert progress_bar(5, "x").interval == progress.DEFAULT_INTERVAL


@pytest.mark.slow
def test_dvc_repro_into_a_log_file_shows_progress_of_embed_and_vocab(tmp_path):
    import os
    import subprocess
    import sys

    from tests.test_pipeline import make_repo

    repo = make_repo(tmp_path / "project")
    log = tmp_path / "run.log"
    env = dict(os.environ, LAIC_PROGRESS_SECONDS="0", PYTHONUNBUFFERED="1", DVC_NO_ANALYTICS="1")
    with open(log, "w") as fh:  # stdout and stderr to a file: no terminal anywhere
        subprocess.run([sys.executable, "-m", "dvc", "repro", "vocab", "embed"], cwd=repo, env=env, stdout=fh,
                       stderr=subprocess.STDOUT, timeout=600, check=True)
    text = log.read_text()
    line = r"{}: [\d,]+/[\d,]+ {}s \([\d.]+%\), [\d.]+ {}s/s, .* elapsed"
    assert re.search(line.format("vocab", "noun", "noun"), text), text[-3000:]
    assert re.search(line.format(r"embed[^:]*", "img", "img"), text), text[-3000:]
    assert re.search(r"vocab: encoding 15 nouns x 2 templates takes about .* once per model", text), text[-3000:]
