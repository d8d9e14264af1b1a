"""The error hierarchy. Every user-facing failure is a CurateError with a message and a hint."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CurateError(Exception):
    """Base of every error curate reports to a user (no traceback, exit 1)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(CurateError):
    """Bad arguments: a budget unit, an option combination."""


class RecipeError(CurateError):
    """A TOML recipe that does not describe a valid plan."""


class SchemaError(CurateError):
    """Input columns missing or of the wrong type."""


class InputDataError(CurateError):
    """An unreadable, truncated or malformed input file."""


class OutputError(CurateError):
    """An output location that cannot be written or holds another run."""


class StageError(CurateError):
    """A stage that cannot run with its configuration or artifact."""


class MissingDependencyError(CurateError):
    """An optional extra that is not installed."""


class NativeBuildError(CurateError):
    """The compiled kernel is missing or does not match this package."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
