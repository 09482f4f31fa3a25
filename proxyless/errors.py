"""The base of every error caused by user input (bad files, flags, data).

The CLI prints such errors as one line and exits with code 2; anything else is a bug and keeps
its traceback.
"""


class UserError(ValueError):
    """Bad user input; the message names the problem and, where there is one, the fix."""


def check_positive_flags(source: object, *names: str) -> None:
    """Raise a UserError naming the flag (`batch_size` -> `--batch-size`) of the first attribute of
    `source` that is set but not a positive integer; None (unset) passes."""
    for name in names:
        value = getattr(source, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
