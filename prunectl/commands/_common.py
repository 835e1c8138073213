"""What every command shares: the exit-code contract of DESIGN.md and the stderr console."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, the shell's convention

err_console = Console(stderr=True, highlight=False)


def _filesystem_refusal(error: OSError) -> str | None:
    """The one-line message for an OSError the user can fix (disk full, read-only, no permission), else None."""
    from prunectl.files import USER_FIXABLE, describe_os_error

    if error.errno not in USER_FIXABLE:
        return None

    return describe_os_error(error, error.filename or "a file", "write")


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that mean "bad input" (exit 2), from every package, imported lazily."""
    from prunectl.errors import PrunectlError

    types: list[type[BaseException]] = [PrunectlError]
    try:
        from exporters.errors import ExporterInputError

        types.append(ExporterInputError)
    except ImportError:
        pass
    return tuple(types)


def crash_log_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prunectl" / "logs"


def _write_crash_log() -> Path | None:
    try:
        directory = crash_log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = directory / f"crash-{stamp}.log"
        path.write_text(" ".join(sys.argv) + "\n\n" + traceback.format_exc())
        return path
    except OSError:
        return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every `except Exception` lets it
    through and the run stops at once, in the state a resume continues from."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM (a cancelled CI job, `docker stop`) stops it like Ctrl-C
    instead of killing it mid-write; the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handle_errors(resume_hint: Callable[..., str | None] | None = None) -> Callable[[F], F]:
    """Turn exceptions into DESIGN.md's exit codes with a one-line message and no traceback.

    `resume_hint(**kwargs)` may return the command that resumes an interrupted run.
    """

    def decorator(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with sigterm_as_interrupt():
                    return command(*args, **kwargs)
            except typer.Exit:
                raise
            except KeyboardInterrupt as interrupt:
                hint = resume_hint(**kwargs) if resume_hint else None
                raise typer.Exit(stopped(isinstance(interrupt, Terminated), hint)) from None
            except _user_error_types() as error:
                err_console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
                raise typer.Exit(getattr(error, "exit_code", EXIT_BAD_INPUT)) from None
            except OSError as error:
                message = _filesystem_refusal(error)
                if message is None:
                    _internal_error(error)
                err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
                raise typer.Exit(EXIT_BAD_INPUT) from None
            except Exception as error:  # noqa: BLE001 - the last line of defence: exit 3
                _internal_error(error)

        return wrapper  # type: ignore[return-value]

    return decorator


def _internal_error(error: BaseException) -> None:
    """Exit 3 with one line and where the traceback was logged (a bug in prunectl)."""
    log = _write_crash_log()
    where = f"; details in {log}" if log else ""
    err_console.print(
        f"[red]internal error (a bug in prunectl):[/] {type(error).__name__}: {escape(str(error))}{escape(where)}",
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_INTERNAL) from None


def stopped(terminated: bool, hint: str | None = None) -> int:
    """Say that the run was interrupted (or terminated) and how to resume; return the exit code."""
    message = "terminated (SIGTERM)" if terminated else "interrupted"
    if hint:
        message += f"; resume with: {hint}"
    err_console.print(f"[yellow]{escape(message)}[/]", soft_wrap=True)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def print_json(payload: Any) -> None:
    """Results on stdout (only with --json); everything else goes to stderr."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
