"""Errors the suite raises on bad input: each names the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable


class SuiteError(ValueError):
    """A problem with what the user asked for (bad name, shape, value or budget)."""


class MemoryBudgetError(SuiteError, MemoryError):
    """A result would not fit in the memory budget."""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> SuiteError:
    """Error for a name that is not in a registry, listing what is valid."""
    names = ", ".join(sorted(valid))
    return SuiteError(f"unknown {kind} {name!r}; valid {kind}s: {names}")


def require_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SuiteError(f"{name} must be a positive integer, got {value!r}")
    return value
