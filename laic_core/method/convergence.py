"""A label-free stop for training: the partition of the training images no longer moves.

`centers`, TAC and SCAN train for a budget (steps or epochs) that does not
depend on the data; a small folder settles long before it. Every few steps
(or every epoch) the trainer hands `AssignmentStability` the cluster of each
monitored fit image under the current model. Only the model's own
assignments are compared: no label is read.

What "converged" means. Stochastic steps never stop moving the images that
sit near a boundary: on the MiniVLM-64 stand-in 4-7% of the fit images
change cluster in any 50 or 300 steps long after the accuracy has levelled
off, and they flip back as often as they flip. So "fewer than 0.1% changed"
is never met (training would always run to the ceiling), while the
partition stopped improving long before. What does stop at convergence is
net movement. With W = `window` and the assignments now, W and 2W steps
ago, let c1 be the share of images that changed over the last W steps, c0
over the W steps before, c2 over all 2W. Churn alone (images flipping back
and forth) gives c2 = c1 = c0 on average, a partition still on its way
moves further over 2W steps than over W (c2 > c1, c0), and a burst of
change shows in one window and not the other. Training has converged when

    moved = c2 - (c0 + c1) / 2 < tolerance,

which includes a partition that does not move at all, and not before the
partition has changed at least once (a model whose argmax has not moved yet
has not started). Shares of images mean the same for any model, K and N (a
loss tolerance would follow the temperature, K and the model); the churn
differs by model (CLIP ViT-B/32's purer neighbourhoods put fewer images near
a boundary than the stand-in's) and the criterion does not depend on it.
"""

from __future__ import annotations

import numpy as np

from laic_core.errors import LaicError

MONITOR_ROWS = 20_000  # fit images monitored (a seeded sample above this): 0.1% is then >= 20 images
CHECKS_PER_WINDOW = 5  # centers: the assignment is taken every window / 5 steps


def monitor_rows(n_rows: int, seed: int, cap: int = MONITOR_ROWS) -> np.ndarray:
    """(m,) sorted int64 rows whose clusters are watched: all n_rows, or a seeded sample of `cap`."""
    if n_rows <= cap:
        return np.arange(n_rows, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=cap, replace=False)).astype(np.int64)


def check_stop(tolerance, window, section: str) -> tuple[float, int]:
    """Validated (`<section>.stop_tolerance` in [0, 1), `<section>.stop_window` >= 1); tolerance 0 never stops."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise LaicError(f"{section}.stop_tolerance: {tolerance!r} must lie in [0, 1) (a share of the fit images; "
                        "0 = always train to the ceiling)")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise LaicError(f"{section}.stop_window: {window!r} must be an integer >= 1")
    return float(tolerance), int(window)


class AssignmentStability:
    """Watches the clusters of the monitored rows; converged once they stop moving for good.

    Call `check(step, labels)` at increasing steps, step 0 included: labels
    (m,) or (heads, m) int, the cluster of every monitored row (per head;
    shares are then over every (head, row) entry). The records W and 2W
    back are the newest at least that many steps old. After each check:
    `changed` = c1, `moved` = c2 - (c0 + c1) / 2 (None until a record 2W
    back exists), `converged` = moved < tolerance once anything has changed.
    """

    def __init__(self, tolerance: float, window: int, *, section: str = "centers"):
        self.tolerance, self.window = check_stop(tolerance, window, section)
        self.changed: float | None = None
        self.moved: float | None = None
        self.converged = False
        self._started = False  # some monitored row has changed cluster
        self._seen: dict[int, np.ndarray] = {}

    def _back(self, step: int, lag: int) -> np.ndarray | None:
        old = [s for s in self._seen if s <= step - lag]
        return self._seen[max(old)] if old else None

    def check(self, step: int, labels) -> float | None:
        """Record `labels` at `step`; returns `moved` (None until 2W steps are on record)."""
        now = np.array(labels, copy=True)
        one, two = self._back(step, self.window), self._back(step, 2 * self.window)
        self._seen[step] = now
        keep = max((s for s in self._seen if s <= step - 2 * self.window), default=None)
        for s in [s for s in self._seen if keep is not None and s < keep]:  # never compared again
            del self._seen[s]
        if one is not None:
            self.changed = float(np.mean(one != now))
            self._started = self._started or self.changed > 0
        if two is not None:
            before = float(np.mean(two != one))
            self.moved = float(np.mean(two != now)) - (before + self.changed) / 2
            self._started = self._started or before > 0
            self.converged = self._started and self.moved < self.tolerance
        return self.moved

    def shares(self) -> dict[str, float]:
        """{"changed": c1, "moved": moved} for a history row, NaN where not measured yet."""
        return {key: float("nan") if value is None else value
                for key, value in (("changed", self.changed), ("moved", self.moved))}

    def reason(self, ran: int, ceiling: int, unit: str = "steps") -> str:
        """Why training stopped after `ran` of at most `ceiling` steps (or epochs), in one short line."""
        if self.converged:
            return (f"converged: {self.moved:+.3%} of the fit images moved for good over the last "
                    f"{2 * self.window} {unit} (< {self.tolerance:.3%})")
        last = "not measured" if self.moved is None else f"{self.moved:+.3%} moved for good over the last " \
                                                          f"{2 * self.window}"
        return f"ceiling: {ran} of {ceiling} {unit} ({last})"


def epochs_run(history: list[dict], ceiling: int, window: int) -> str:
    """"12 of at most 20 epochs (converged)" from a per-epoch history with a `moved` column."""
    ran = len(history)
    moved = history[-1].get("moved") if history else None
    measured = moved is not None and np.isfinite(moved)
    note = f"; {moved:+.3%} of the fit images moved for good over the last {2 * window} epochs" if measured else ""
    return f"{ran} of at most {ceiling} epochs ({'converged' if ran < ceiling else 'the ceiling'}{note})"
