"""``python -m alignment_unidpo.training.launch ACCELERATE-LAUNCH-ARGS``: ``accelerate launch``,
with a failed run reported the way every entry point reports: lines, not a traceback.

The training processes print their own ``error: [rank N] ...`` line (:mod:`alignment_unidpo.base.cli`) and exit
with status 2; accelerate's launcher would then add a ``CalledProcessError`` or torchrun's
``ChildFailedError`` traceback and a failure table. Here that becomes nothing (the ranks have
said what went wrong) or, for a crash that printed no ``error:`` line, one line naming the
first rank that failed and its exit code or signal. ``--debug`` (or ``ALIGNMENT_UNIDPO_DEBUG=1``)
keeps the launcher's traceback.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys

from ..base.cli import EXIT_USAGE, debug_requested, print_error_line


def failure_line(rank: int | None, exit_code: int) -> str:
    """The ``error:`` line for a training process that died without one of its own."""
    who = "the training process" if rank is None else f"training process rank {rank}"
    if exit_code < 0:
        try:
            how = f"was killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            how = f"was killed by signal {-exit_code}"
        if -exit_code == signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = f"exited with status {exit_code}"
    return f"error: {who} {how}; its output is above (--debug for the launcher's traceback)"


def report_failure(rank: int | None, exit_code: int) -> int:
    """Print a line unless the process printed its own (status 2); the status to exit with."""
    if exit_code == EXIT_USAGE:
        return EXIT_USAGE
    print_error_line(failure_line(rank, exit_code))
    return 1


def main(argv: list[str] | None = None) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if debug_requested():
        launch_command(args)
        return 0
    # torchrun's own notices of the failure ("failed (exitcode: 2)", "Sending process ... SIGTERM")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        launch_command(args)
    except subprocess.CalledProcessError as err:  # one process, or DeepSpeed's own launcher
        return report_failure(None, err.returncode)
    except ChildFailedError as err:  # torchrun: the first rank that failed is the cause
        rank, failure = err.get_first_failure()
        return report_failure(rank, failure.exitcode)
    return 0


if __name__ == "__main__":
    from alignment_unidpo.training.launch import main as package_main

    sys.exit(package_main())
