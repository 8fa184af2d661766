"""User-facing errors.

Every problem a user can fix (a missing file, an unknown column, a model that is not on disk)
is raised as :class:`NlpsegError`. The CLI prints its message as a single line and exits
non-zero; tracebacks are reserved for ``--debug`` and for real bugs.
"""

from __future__ import annotations


class NlpsegError(Exception):
    """An error whose message is written for the person running nlpseg."""

    exit_code: int = 2


class InputError(NlpsegError):
    """The input file or its columns cannot be used as given."""


class ModelUnavailableError(NlpsegError):
    """A model named by id or path cannot be loaded (offline, missing, or unsafe)."""
