"""Where a run's reference log-probs come from: decided once, by :class:`ReferencePlan`.

A loss type that compares the policy with a frozen reference (``needs_reference`` in the
loss table, :data:`alignment_unidpo.configs.LOSS_TYPES`) gets the reference's log-probs
either from a reference model run beside the policy at every step, or, with
``precompute_ref_log_probs``, once before training: then they are columns of the datasets,
found in the on-disk cache (:mod:`.ref_cache`) or computed by the trainer and written there.

:func:`alignment_unidpo.training.run.train` makes the plan before any model loads (a reference
model is loaded only when :attr:`ReferencePlan.needs_model`) and hands it to the trainer,
which computes what it lists in :attr:`ReferencePlan.to_compute`; a trainer built without a
plan makes one from its own datasets, with no cache.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import datasets

from ..configs import loss_of
from .ref_cache import ReferenceLogpsCache, attach_reference_logps
from .tokenization import REFERENCE_COLUMNS


def precomputes_reference(args) -> bool:
    """Whether the run computes the reference's log-probs once, before training: its loss type
    needs a reference and the recipe sets ``precompute_ref_log_probs``."""
    return loss_of(args).needs_reference and bool(args.precompute_ref_log_probs)


def has_reference_columns(ds) -> bool:
    """Whether ``ds`` carries precomputed reference log-probs."""
    return isinstance(ds, datasets.Dataset) and set(REFERENCE_COLUMNS) <= set(ds.column_names)


def _attach_cached(ds, cache: ReferenceLogpsCache | None):
    """``ds`` with the reference columns the cache holds for it (as it is when there are none)."""
    if ds is None or cache is None or has_reference_columns(ds):
        return ds
    values = cache.load(ds)
    return ds if values is None else attach_reference_logps(ds, values)


@dataclass(frozen=True)
class ReferencePlan:
    """Where the reference log-probs of a run's splits come from.

    ``train`` and ``eval`` are the splits to train and evaluate on, the columns the cache
    held already attached; the trainer must get these very datasets.
    """

    needed: bool  # the loss type compares with a reference (the loss table)
    precompute: bool  # computed once before training (precompute_ref_log_probs), not at every step
    cache: ReferenceLogpsCache | None  # where they are looked up and written; None: not known (yet)
    train: datasets.Dataset | None
    eval: datasets.Dataset | None

    @classmethod
    def decide(cls, args, train, eval_, cache: ReferenceLogpsCache | None = None) -> "ReferencePlan":
        """The plan for ``args`` (a UniDPOConfig) and these splits; with ``precompute`` and a
        ``cache``, the splits it holds get their columns now."""
        precompute = precomputes_reference(args)
        if precompute:
            train, eval_ = _attach_cached(train, cache), _attach_cached(eval_, cache)
        return cls(loss_of(args).needs_reference, precompute, cache if precompute else None, train, eval_)

    def with_cache(self, cache: ReferenceLogpsCache | None) -> "ReferencePlan":
        """The plan once the cache is known (a hub reference is pinned once it loads): the
        splits it holds get their columns, the others are written to it."""
        if not self.precompute:
            return self
        return replace(self, cache=cache, train=_attach_cached(self.train, cache), eval=_attach_cached(self.eval, cache))

    @property
    def splits(self) -> dict[str, datasets.Dataset]:
        return {name: ds for name, ds in (("train", self.train), ("eval", self.eval)) if ds is not None}

    @property
    def to_compute(self) -> list[str]:
        """The splits whose reference log-probs are computed before training (none without ``precompute``)."""
        return [name for name, ds in self.splits.items() if not has_reference_columns(ds)] if self.precompute else []

    @property
    def needs_model(self) -> bool:
        """Whether a reference model (or, with LoRA, the adapter-free policy) must be at hand:
        at every step, or to compute the splits the cache lacks."""
        return self.needed and (not self.precompute or bool(self.to_compute))
