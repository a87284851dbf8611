"""Where the repository is: the one place that computes it (every stage that reads its folders imports it)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # src/alignment_unidpo/base/paths.py


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it, else as given: what a
    committed record (``demo/study.json``) names, not the folders of the machine it ran on."""
    try:
        return Path(path).resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)
