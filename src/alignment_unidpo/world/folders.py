"""A world's data and SFT model: where they are cached, and made once per seed and settings.

The world of a seed (:mod:`.task`) and its SFT model (:mod:`.sft`) are written into folders
named by their keys under a root (default ``outputs/toy-world``), so every run, the demo,
the study, ``make data`` and ``make eval`` share them; :func:`world_values` are the recipe
keys that point a preference run at them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..base.paths import REPO_ROOT
from .sft import SFTConfig, ensure_sft
from .task import WorldConfig, write_world

WORLD_ROOT = REPO_ROOT / "outputs" / "toy-world"


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """Where worlds and SFT models are cached, and any non-default world / SFT settings
    (the seed comes from the run). Tests use a small world; the demo the default one."""

    root: Path = WORLD_ROOT
    world: dict[str, Any] = dataclasses.field(default_factory=dict)
    sft: dict[str, Any] = dataclasses.field(default_factory=dict)


def world_paths(seed: int, spec: WorldSpec = WorldSpec()) -> tuple[WorldConfig, SFTConfig, Path, Path]:
    """The world and SFT configs of ``seed`` and the folders they are cached in (nothing written)."""
    world = WorldConfig(**{"seed": seed, **spec.world})
    sft = SFTConfig(**{"seed": seed, **spec.sft})
    return world, sft, Path(spec.root) / f"world-{world.key()}", Path(spec.root) / f"sft-{world.sft_key()}"


def prepare(seed: int, spec: WorldSpec = WorldSpec(), progress: bool = True) -> tuple[Path, Path]:
    """(world data folder, SFT model folder) for ``seed``, each generated once and cached by key."""
    world, sft, world_dir, sft_dir = world_paths(seed, spec)
    world_dir = write_world(world, world_dir)
    sft_dir = ensure_sft(world_dir, sft_dir, sft, progress=progress)
    return world_dir, sft_dir


def world_values(world_dir: Path, sft_dir: Path, seed: int, progress: bool, pairs: Path | None = None) -> dict[str, Any]:
    """The recipe keys a world run sets: its SFT model, its training pairs and its seed."""
    return {
        "model_name_or_path": str(sft_dir),
        "dataset_mixture": [{"path": str(pairs or world_dir / "train_pairs.jsonl")}],
        "seed": seed,
        "disable_tqdm": not progress,
    }
