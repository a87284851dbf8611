"""Where the repository is: the one place that computes it (every stage that reads its folders imports it)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # src/alignment_unidpo/base/paths.py
