"""One error hierarchy for everything a user can get wrong.

The CLI maps :class:`PrunectlError` to exit code 2 and prints only its message, so every
message must name the problem *and* the fix on one line.
"""

from __future__ import annotations


class PrunectlError(Exception):
    """Bad input or usage: the user can fix it. Exit code 2."""

    exit_code = 2


class RecipeError(PrunectlError):
    """A recipe field (from a flag, the environment or a file) has an invalid value."""


class DataError(PrunectlError):
    """A data source cannot be read, or holds data prunectl cannot use."""


class ModelError(PrunectlError):
    """A model source cannot be built or loaded, or does not fit the data."""


class RunDirError(PrunectlError):
    """The run directory cannot be used (already finished, nothing to resume, ...)."""


class SparsityCheckError(RuntimeError):
    """The pruned weights miss the requested sparsity: a bug in prunectl, not bad input."""
