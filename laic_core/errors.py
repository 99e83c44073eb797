"""The one exception type users see, and how its messages name many things."""

import errno

MAX_LISTED = 20  # names quoted in one message; the rest are counted
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # a write failed for want of space: a full disk or quota


class LaicError(ValueError):
    """A user-facing error: the message names the culprit and the fix."""


def printable(text: str) -> str:
    """`text` with the bytes of a file name that are not UTF-8 written as `\\xNN`.

    Python keeps such bytes as lone surrogates ("caf\\udce9.jpg" for b"caf\\xe9.jpg"),
    which no UTF-8 file, Parquet column or terminal takes: every source path that
    is stored or shown goes through this (`laic_core.data.images.source_file` reads
    it back). Text without them is returned as it is.
    """
    text = str(text)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    return "".join(
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
        else c.encode("utf-8", "backslashreplace").decode("ascii") if 0xD800 <= ord(c) <= 0xDFFF
        else c
        for c in text)


def name_some(items: list, limit: int = MAX_LISTED) -> str:
    """'a, b, c' or 'a, b, ... and 7 more' (messages stay readable for any count)."""
    shown = ", ".join(printable(p) for p in items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")
