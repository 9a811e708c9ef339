"""The one exception type every layer raises for the user's eyes.

It sits at the bottom of the house (it imports nothing of asft) so that data, config, model,
train and evaluate can all raise it without importing the command line above them.
"""

from __future__ import annotations


class AsftError(Exception):
    """An error meant for the user: printed without a traceback, exit code 1 or ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
