"""What every tool in ``tools/`` shares: one-line errors, Ctrl-C, ``--help`` with defaults, ``--no-progress``.

A tool's ``main(argv)`` is ``run_tool(body, argv)``: ``body`` parses and wires; ``run_tool``
turns the toolkit's bad-input errors (``ValueError`` subclasses such as ``DatasetError``,
``ConfigError``, ``SynthError``; refused pickles; the ``extra_errors`` a tool names), a
failing output directory (``OSError``) and Ctrl-C into one line on stderr, never a
traceback. Ctrl-C prints :data:`INTERRUPTED_MESSAGE` and exits with 130; every writer of the
toolkit goes through ``datasets.atomic``, so an interrupted run leaves nothing half-written.

Worker processes (``ProcessPoolExecutor`` initialisers) call :func:`quiet_worker_signals`:
they ignore SIGINT (the parent alone reacts to Ctrl-C, then stops them) and turn SIGTERM
into a clean exit, so their temporary files are removed and no trace reaches the terminal.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import pickle
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

from common.progress import PROGRESS_ENV, disable_progress, progress_allowed

INTERRUPTED_MESSAGE = "interrupted; rerun the same command to resume"
EXIT_INTERRUPTED = 130
#: errno values that mean "this place cannot be written".
_WRITE_FAILURES = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                   errno.EROFS: "read-only file system"}


class OutputError(OSError):
    """The output location cannot be created or written (message already names it)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the module docstring's layout and shows every option's default.

    ``(default: …)`` is appended unless the help text already states the default; options
    without a value (``None``) or plain flags (``False``) explain themselves in their help.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default is argparse.SUPPRESS \
            or action.default == []  # nothing to show: the help text explains the absence
        if "default" in text.lower() or silent or action.required:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class ToolParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``prog: error: …; see --help``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def tool_parser(doc: str, **options) -> argparse.ArgumentParser:
    """A :class:`ToolParser` described by a tool's docstring, defaults shown in ``--help``."""
    return ToolParser(description=doc, formatter_class=HelpFormatter, **options)


def add_progress_switch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines (also: environment HANDKIT_PROGRESS=0)")


def apply_progress_switch(args: argparse.Namespace) -> bool:
    """Honour ``--no-progress`` (here and in worker processes); return whether progress may show."""
    if getattr(args, "no_progress", False):
        disable_progress()
    return progress_allowed()


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the message names what was found)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value}")
    return value


def one_line(exc: BaseException) -> str:
    """The exception's message on one line."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def describe_os_error(exc: OSError, where: str | Path | None = None) -> str:
    """``<file>: <what went wrong>`` for an ``OSError``; ``where`` names the place when the error does not."""
    name = exc.filename if exc.filename is not None else where
    reason = _WRITE_FAILURES.get(exc.errno) or (exc.strerror or one_line(exc))
    prefix = f"{name}: " if name is not None else ""
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "; free some space and rerun the same command to resume"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; expected a writable location, choose another output directory"
    return f"{prefix}{reason}{hint}"


def require_writable_directory(directory: str | Path, flag: str = "--out") -> Path:
    """Check that ``directory`` (or, while it does not exist yet, its nearest existing parent,
    where it would be created) is a directory in which a file can be written. Nothing is left behind."""
    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{flag} {directory}: expected a writable directory, found that {existing} is a file")
    probe = existing / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        found = _WRITE_FAILURES.get(exc.errno) or exc.strerror or one_line(exc)
        where = "" if existing == directory else f" (in {existing}, where it would be created)"
        raise OutputError(f"{flag} {directory}: expected a writable directory, found: {found}{where}") from None
    return directory


@contextlib.contextmanager
def writing_into(directory: str | Path, flag: str = "--out") -> Iterator[Path]:
    """Check ``directory`` first (:func:`require_writable_directory`); a write failure inside the
    block (disk full, permissions) becomes one :class:`OutputError` line naming the file or directory."""
    directory = require_writable_directory(directory, flag)
    try:
        yield directory
    except OutputError:
        raise
    except OSError as exc:
        if exc.errno not in _WRITE_FAILURES:
            raise
        raise OutputError(describe_os_error(exc, where=directory)) from None


def run_tool(body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, *,
             extra_errors: tuple[type[BaseException], ...] = (), error_code: int = 2) -> int:
    """Run a tool's ``body(argv)``; bad input, output failures and Ctrl-C end in one line on stderr.

    ``--no-progress`` sets :data:`~common.progress.PROGRESS_ENV` for the tool's run (and its
    workers); it is restored afterwards, so a tool called in-process leaves no trace.
    """
    progress_setting = os.environ.get(PROGRESS_ENV)
    try:
        return body(argv)
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        print(INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except (ValueError, pickle.UnpicklingError, *extra_errors) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return error_code
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr, flush=True)
        return error_code
    finally:
        if progress_setting is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = progress_setting


def _ignore_further_interrupts() -> None:
    """A second Ctrl-C while the interpreter shuts down (joining workers) must not print a trace,
    nor may the helper threads of multiprocessing and DataLoader workers (e.g. the file-descriptor
    sharer, whose connections break as the workers go) that end with an error during shutdown."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.excepthook = lambda args: None


def quiet_worker_signals() -> None:
    """In a worker process: ignore Ctrl-C (the parent handles it) and exit cleanly on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_terminate)


#: Signals received inside :func:`termination_deferred` (None: not inside one).
_DEFERRED_SIGNALS: list[int] | None = None


def _exit_on_terminate(signum, frame) -> None:
    # Further SIGTERMs (a broken pool terminates its workers again) must not cut the unwinding
    # short; a worker that hangs is SIGKILLed by its parent (render.synth._stop_workers).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _DEFERRED_SIGNALS is not None:
        _DEFERRED_SIGNALS.append(signum)
        return
    raise SystemExit(128 + signum)  # unwinds: atomic writes in progress delete their temporary files


@contextlib.contextmanager
def termination_deferred() -> Iterator[None]:
    """In a worker (after :func:`quiet_worker_signals`): a SIGTERM that arrives inside the block ends
    the process when the block is done, so two writes that belong together (a shard and its manifest
    entry) are never cut apart. Not nested. A worker that overruns its parent's grace period is still
    SIGKILLed; what that leaves (a temporary file, an unrecorded shard) is redone on resume."""
    global _DEFERRED_SIGNALS
    _DEFERRED_SIGNALS = []
    try:
        yield
    finally:
        received, _DEFERRED_SIGNALS = _DEFERRED_SIGNALS, None
    if received:
        raise SystemExit(128 + received[0])


__all__ = ["run_tool", "tool_parser", "ToolParser", "HelpFormatter", "add_progress_switch", "apply_progress_switch",
           "positive_int", "require_writable_directory", "writing_into", "describe_os_error", "one_line",
           "quiet_worker_signals", "termination_deferred", "OutputError", "INTERRUPTED_MESSAGE", "EXIT_INTERRUPTED"]
