"""The one exception type users see, and how its messages name many things."""

import errno

MAX_LISTED = 20  # names quoted in one message; the rest are counted
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a write failed for want of space: a full disk or quota


class LaicError(ValueError):
    """A user-facing error: the message names the culprit and the fix."""


def name_some(items: list, limit: int = MAX_LISTED) -> str:
    """'a, b, c' or 'a, b, ... and 7 more' (messages stay readable for any count)."""
    shown = ", ".join(str(p) for p in items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")
