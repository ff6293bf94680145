"""The one exception type for problems a user can fix (a path, a file, a config key, a shape)."""

from collections.abc import Iterable


class SonofmError(Exception):
    """A user-fixable problem. The CLI prints its message on one line and exits with code 2.

    Messages name the offending file or key, e.g. ``"corrupt image: data/benign/x.png (truncated)"``.
    Bugs are never wrapped in this type, so they keep their traceback.
    """


def first_line(error: BaseException, limit: int = 120) -> str:
    """The first line of a library's exception message, cut to ``limit`` characters (its type name when empty), so
    a SonofmError quoting it stays on one line."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def raise_first_failure(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise SonofmError with the message of the first ``(ok, message)`` pair that is not ok."""
    for ok, message in checks:
        if not ok:
            raise SonofmError(message)
