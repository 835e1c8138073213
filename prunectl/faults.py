"""Fault injection, so crash-safety tests can kill a run at an exact point instead of guessing with sleeps.

`PRUNECTL_FAULT=ACTION@POINT[,ACTION@POINT...]` makes the process signal itself when it reaches
POINT. Actions:

- `kill`: SIGKILL, which no cleanup code survives (a power cut, the OOM killer, `kill -9`);
- `interrupt`: SIGINT, what Ctrl-C sends;
- `terminate`: SIGTERM, what CI runners and container managers send before they kill a job.

Points, in the order a run reaches them:

- `round-K-epoch-E`: in round K, after fine-tuning epoch E (1-based), before the round's checkpoint;
- `round-K`: right after round K's checkpoint was written;
- `shadow-pipeline`: as each of the gate's shadow pipelines starts, in whichever process runs
  it (a worker of the local pool or a Ray task: `kill` there is a worker dying);
- `export`: after the pruned model's files are written into the export staging directory,
  before the dense baseline and before anything is moved into place;
- `after-command`: after a CLI command returned, before the process exits.

The variable is for tests; a user never needs it. It is read at every point (not cached), so a
test can set it per subprocess.

A process started in the background by a non-interactive shell (`cmd &` in a script, and so
some CI runners and test harnesses) inherits SIGINT *ignored*, and Python then installs no
Ctrl-C handler: a real Ctrl-C would not reach it either. An `interrupt` fault in such a process
says so on stderr instead of silently doing nothing, and tests start their child processes with
SIGINT at its default, as a terminal's foreground job has it.
"""

from __future__ import annotations

import os
import signal
import sys

FAULT_ENV = "PRUNECTL_FAULT"
ACTIONS: dict[str, signal.Signals] = {
    "kill": signal.SIGKILL,
    "interrupt": signal.SIGINT,
    "terminate": signal.SIGTERM,
}


def fault_point(point: str) -> None:
    """Signal this process if `PRUNECTL_FAULT` names `point`; do nothing otherwise."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    for item in spec.split(","):
        action, _, where = item.strip().partition("@")
        if where == point and action in ACTIONS:
            if ACTIONS[action] is signal.SIGINT and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
                sys.stderr.write(f"{FAULT_ENV}: SIGINT is ignored in this process (started in the background?); the interrupt at {point} does nothing\n")
            os.kill(os.getpid(), ACTIONS[action])
