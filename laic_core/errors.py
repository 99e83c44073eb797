"""The one exception type users see."""


class LaicError(ValueError):
    """A user-facing error: the message names the culprit and the fix."""
