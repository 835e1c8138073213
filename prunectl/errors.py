"""One error hierarchy for everything a user can get wrong.

The CLI maps :class:`PrunectlError` to exit code 2 and prints only its message, so every
message must name the problem *and* the fix on one line.
"""

from __future__ import annotations


class PrunectlError(Exception):
    """Bad input or usage: the user can fix it. Exit code 2.

    The message is kept to one line even when it quotes a library's multi-line error or a
    value with a newline in it: line breaks (and the blanks around them) become one space.
    """

    exit_code = 2

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


def one_line(text: str) -> str:
    """`text` with its lines joined by single spaces (blank lines dropped)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class RecipeError(PrunectlError):
    """A recipe field (from a flag, the environment or a file) has an invalid value."""


class DataError(PrunectlError):
    """A data source cannot be read, or holds data prunectl cannot use."""


class ModelError(PrunectlError):
    """A model source cannot be built or loaded, or does not fit the data."""


class RunDirError(PrunectlError):
    """The run directory cannot be used (already finished, nothing to resume, ...)."""


class IntegrityError(PrunectlError):
    """What would ship is not provably what the gate audited (a checkpoint changed after the
    audit). Exit code 1, like a failed gate: the release must not go out, and re-running fixes it."""

    exit_code = 1


class SparsityCheckError(RuntimeError):
    """The pruned weights miss the requested sparsity: a bug in prunectl, not bad input."""
