"""How every entry point reports a mistake: one ``error: ...`` line, exit status 2.

Decorate a ``main(argv)`` with :func:`entry_point`; it takes ``--debug`` off the command
line and, without it, turns the project's own error types into that line instead of a
traceback. With ``--debug`` the exception propagates, traceback and all. Anything else
(a bug, a CUDA error) is not caught.

Every entry point also prints the Python stack of each of its threads to stderr on
``SIGUSR1`` (``kill -USR1 PID``): the first thing to look at when a distributed run hangs.
"""

from __future__ import annotations

import faulthandler
import contextlib
import functools
import os
import signal
import sys
from typing import Callable

from .errors import InputError

DEBUG_FLAGS = ("--debug", "--debug=true", "--debug=1")
# Set by an entry point given --debug, so that the processes it launches show tracebacks too.
DEBUG_ENV = "ALIGNMENT_UNIDPO_DEBUG"
# The package's errors (base.errors) are ValueErrors; a bare ValueError comes from
# constructing a config (world, SFT, a bad model name), FileNotFoundError from a missing file.
REPORTED_ERRORS = (ValueError, FileNotFoundError)
EXIT_USAGE = 2


def error_line(err: BaseException) -> str:
    """The text after ``error: ``: the message, plus a hint for errors not raised by us."""
    text = str(err) or type(err).__name__
    if not isinstance(err, InputError):
        text += " (--debug for the traceback)"
    return text


def debug_requested() -> bool:
    """Whether this process or the one that launched it was given ``--debug``."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def debug_environment():
    """``ALIGNMENT_UNIDPO_DEBUG=1`` while the block runs, the previous value after."""
    before = os.environ.get(DEBUG_ENV)
    os.environ[DEBUG_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = before


def print_error_line(line: str) -> None:
    """Write ``line`` and its newline to stderr in one write, so that the lines of several ranks
    sharing one stderr never interleave mid-line (``print`` writes the text and the newline
    separately)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def rank_prefix() -> str:
    """``[rank N] `` inside a launched run of several processes, else nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"[rank {os.environ.get('RANK', '?')}] "
    return ""


def report_unexpected(err: BaseException) -> bool:
    """In a run of several processes, ranks other than 0 print an unexpected error as one line
    (rank 0 prints the traceback); returns whether it was printed so."""
    if int(os.environ.get("RANK", "0")) == 0 or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    print_error_line(f"error: {rank_prefix()}{type(err).__name__}: {err} (rank 0 shows the traceback; --debug "
                     "for every rank's)")
    return True


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every thread's stack to the process's real stderr (where
    there is one with a file descriptor, and a SIGUSR1: not on Windows)."""
    if not hasattr(signal, "SIGUSR1") or sys.__stderr__ is None:
        return
    try:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: no fileno
        pass


def entry_point(main: Callable[[list[str]], int]) -> Callable[..., int]:
    """Wrap ``main(argv) -> exit status`` with the ``--debug`` flag and the ``error:`` line."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        dump_stacks_on_sigusr1()
        if any(flag in argv for flag in DEBUG_FLAGS):
            with debug_environment():  # the processes main launches inherit it; nothing leaks after
                return main([arg for arg in argv if arg not in DEBUG_FLAGS])
        if debug_requested():
            return main(argv)
        try:
            return main(argv)
        except REPORTED_ERRORS as err:
            print_error_line(f"error: {rank_prefix()}{error_line(err)}")
            return EXIT_USAGE
        except Exception as err:  # a bug: the traceback from rank 0 only
            if report_unexpected(err):
                return 1
            raise

    return wrapper
