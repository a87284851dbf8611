"""Where the repository is: the one place that computes it (recipes, data, datagen, the world and usage import it)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
