"""The one exception type for bad data input."""

from __future__ import annotations

from proxyless.errors import UserError


class DataError(UserError):
    """A data source the user pointed at cannot be used; the one-line message names the problem
    and the fix."""
