"""``make eval``: ``python -m alignment_unidpo.eval_cli [RUN] [--suite=...] [--key=value ...]``.

The evaluation (:func:`alignment_unidpo.evaluation.run_eval.main`) with the preference
world's suite registered (by importing :mod:`alignment_unidpo.world`): a world run's folder
is evaluated by it without ``--suite``. ``--help`` lists every option with its default and
allowed values (the world's suite among them); ``--dry_run`` prints what would run as JSON.
"""

from __future__ import annotations

import sys

from . import world  # noqa: F401  (registers the world's evaluation suite)
from .evaluation.run_eval import main

if __name__ == "__main__":
    sys.exit(main())
