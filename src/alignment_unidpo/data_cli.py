"""``make data``: ``python -m alignment_unidpo.data_cli [CONFIG.yaml] [--dry_run] [--progress=false] [--section.key=value ...]``.

The data pipeline (:func:`alignment_unidpo.datagen.pipeline.main`) with the preference world
plugged in: importing :mod:`alignment_unidpo.world` registers its prompt source, its SFT
model and its judge, which the default config (no CONFIG: ``data_configs/toy-world-on-policy.yaml``)
uses. Under ``accelerate launch -m alignment_unidpo.data_cli ...`` every process generates
and scores its own shards. ``--help`` lists every config key with its default and allowed
values (the world's source and judge among them); ``--dry_run`` prints the plan as JSON.
"""

from __future__ import annotations

import sys

from . import world  # noqa: F401  (registers the world's prompt source, model and judge)
from .datagen.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
