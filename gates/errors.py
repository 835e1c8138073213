"""The gate's exceptions. `prunectl` maps `GateInputError` to exit code 2 (bad input)."""

from __future__ import annotations


class GateInputError(ValueError):
    """The inputs cannot support a meaningful gate (too little data, unknown attack, ...).

    The message is one line that names the problem and what to change.
    """
