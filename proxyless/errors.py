"""The base of every error caused by user input (bad files, flags, data).

The CLI prints such errors as one line and exits with code 2; anything else is a bug and keeps
its traceback.
"""

import dataclasses
import math

FIELD_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


class UserError(ValueError):
    """Bad user input; the message names the problem and, where there is one, the fix."""


class NonFiniteLossError(UserError):
    """A loss became NaN or infinite (too high a learning rate, bad data); the step that computed it
    was not taken, so the weights, α and the last checkpoint on disk are as they were."""


def check_positive_flags(source: object, *names: str) -> None:
    """Raise a UserError naming the flag (`batch_size` -> `--batch-size`) of the first attribute of
    `source` that is set but not a positive integer; None (unset) passes."""
    for name in names:
        value = getattr(source, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def check_field_types(config: object) -> None:
    """Raise a UserError naming the flag of the first field of the dataclass `config` whose value is
    not of its declared type (int, float, bool, str, or one of them `| None`, which also takes None;
    a config read back from JSON may hold anything) or is a float that is not finite."""
    for field in dataclasses.fields(config):
        value, declared = getattr(config, field.name), str(field.type)
        flag = f"--{field.name.replace('_', '-')}"
        optional = declared.endswith(" | None")
        declared = declared.removesuffix(" | None")
        if declared not in FIELD_TYPES or (optional and value is None):
            continue
        if not isinstance(value, FIELD_TYPES[declared]) or isinstance(value, bool) != (declared == "bool"):
            raise UserError(f"{flag} must be {'an' if declared == 'int' else 'a'} {declared}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value!r}")
