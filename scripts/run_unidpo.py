#!/usr/bin/env python
"""Train one recipe: ``accelerate launch scripts/run_unidpo.py RECIPE [--key=value ...]``.

``make train RECIPE=...`` builds this command for you; see README.md.
"""
import sys

from alignment_unidpo.training.run import main

if __name__ == "__main__":
    sys.exit(main())
