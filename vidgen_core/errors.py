"""Errors a user can cause. The CLI prints their message as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad path, bad config, unknown model URI).

    The message must be one line that says what is wrong and how to fix it.
    """
