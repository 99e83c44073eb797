"""Progress of long work (done/total, rate, time left) on stderr: a bar on terminals, lines in logs.

A tqdm bar redraws itself in place, which a terminal shows and a log file
cannot: redirected to a file (`dvc repro > run.log 2>&1`, a batch job) it
used to print nothing for the hour `vocab` takes. Where stderr is not a
terminal, the same calls print one line every `LAIC_PROGRESS_SECONDS`
(30 by default), e.g.

    vocab: 40,960/118,040 nouns (34.7%), 36.4 nouns/s, 18 min 45 s elapsed, about 35 min left
"""

from __future__ import annotations

import os
import sys
import time

INTERVAL_ENV = "LAIC_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def duration_text(seconds: float) -> str:
    """'40 s', '18 min 45 s', '2 h 10 min' (seconds rounded; minutes from 10 minutes on)."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 10:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes + (secs >= 30), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


class LogProgress:
    """tqdm's interface (update, set_postfix, set_description, write, close, with) as lines for a log.

    `ceiling`: the total is a budget that the work may stop short of (a
    training that stops when it has converged), so the time left is "at most".
    """

    def __init__(self, total: int, desc: str, unit: str = "it", *, interval: float | None = None,
                 ceiling: bool = False, stream=None):
        self.total, self.desc, self.unit, self.ceiling = int(total), desc, unit, ceiling
        self.interval = _interval() if interval is None else interval
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self.postfix = ""
        self.started = self.last = time.monotonic()
        self.lines = 0
        self.closed = False

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval and self.n < self.total:
            self.last = now
            self.lines += 1
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.n / self.total:.1f}%)" if self.total else ""
        text = (f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}s{share}, {rate:.1f} {self.unit}s/s, "
                f"{duration_text(elapsed)} elapsed")
        if rate > 0 and self.n < self.total:
            text += f", {'at most' if self.ceiling else 'about'} {duration_text((self.total - self.n) / rate)} left"
        return text + self.postfix

    def set_postfix(self, **values) -> None:
        self.postfix = "".join(f", {key} {value}" for key, value in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        self._print(text)  # a message of the work's own (a skipped file), not a progress line

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.lines or time.monotonic() - self.started >= self.interval:  # long enough to report: say it ended
            self._print(self.line() + " - done")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True, *, ceiling: bool = False):
    """A tqdm bar on a terminal; a `LogProgress` (a line every 30 s) where stderr is not one.

    `enabled=False` gives a silent bar with the same interface, so library
    functions can take a `progress` flag without branching. `ceiling`: the
    total is a budget the work may stop short of (the time left is "at most").
    """
    from tqdm.auto import tqdm

    if enabled and not _is_terminal(sys.stderr):
        return LogProgress(total, desc, unit, ceiling=ceiling)
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=None if enabled else True, smoothing=0.1)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
