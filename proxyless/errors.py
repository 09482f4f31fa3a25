"""The base of every error caused by user input (bad files, flags, data).

The CLI prints such errors as one line and exits with code 2; anything else is a bug and keeps
its traceback.
"""


class UserError(ValueError):
    """Bad user input; the message names the problem and, where there is one, the fix."""
