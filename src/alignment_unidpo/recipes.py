"""``make train``: ``python -m alignment_unidpo.recipes [RECIPE] [--dry_run] [--debug] [--key=value ...]``.

Resolves the recipe (:mod:`alignment_unidpo.resolve`), runs the launcher's checks
(:mod:`alignment_unidpo.checks`) and either prints the resolved recipe as JSON or replaces
this process with ``accelerate launch`` (:func:`~alignment_unidpo.resolve.launch_command`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys

from .base.cli import entry_point
from .base.yamlio import split_overrides
from .checks import preflight
from .configs import LaunchArguments
from .resolve import launch_command, resolve
from .training.checkpoints import check_output_dir
from .usage import help_text


@entry_point
def main(argv: list[str]) -> int:
    """``python -m alignment_unidpo.recipes [RECIPE] [--dry_run] [--debug] [--key=value ...]``.

    Resolves the recipe (every value range-checked), checks local model folders and local
    data files (:mod:`.checks`), then either prints the recipe as one JSON object
    (``--dry_run``, no model loaded) or replaces this process with ``accelerate launch``.
    ``--help`` lists the make targets, recipe keys and accelerate configs.
    """
    if "--help" in argv or "-h" in argv:
        print(help_text())
        return 0
    recipe = argv.pop(0) if argv and not argv[0].startswith("--") else None
    dry_run = False
    for flag in ("--dry_run", "--dry_run=true", "--dry_run=1"):
        if flag in argv:
            argv.remove(flag)
            dry_run = True
    resolved = resolve(recipe, argv)
    check_output_dir(resolved.training, dry_run=dry_run, num_processes=resolved.launch.num_processes)  # refuse a used output_dir before launching
    warnings = preflight(resolved, dry_run=dry_run)
    # Pass launch keys to accelerate, everything else to the training script.
    launch_keys = {f.name for f in dataclasses.fields(LaunchArguments)}
    script_args = [f"--{key}={value}" for key, value in split_overrides(argv) if key not in launch_keys]
    cmd = launch_command(resolved, script_args)
    if dry_run:
        out = resolved.to_json_dict()
        out["launch"]["command"] = shlex.join(cmd)
        out["warnings"] = warnings  # what this machine lacks for a real launch (checks.environment_problems)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        print(json.dumps(out, indent=2, sort_keys=False))
        return 0
    print("launching:", shlex.join(cmd), file=sys.stderr, flush=True)
    os.execvp(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
