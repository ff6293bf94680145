"""The one exception type for problems a user can fix (a path, a file, a config key, a shape)."""


class SonofmError(Exception):
    """A user-fixable problem. The CLI prints its message on one line and exits with code 2.

    Messages name the offending file or key, e.g. ``"corrupt image: data/benign/x.png (truncated)"``.
    Bugs are never wrapped in this type, so they keep their traceback.
    """
