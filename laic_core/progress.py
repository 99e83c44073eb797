"""Progress bars for long work (images/s, rows/s, ETA) on stderr."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True):
    """A tqdm bar, shown on terminals only (DVC passes the terminal through).

    `enabled=False` gives a silent bar with the same interface, so library
    functions can take a `progress` flag without branching.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=None if enabled else True, smoothing=0.1)
