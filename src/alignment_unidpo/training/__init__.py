"""Training core: one recipe from config to a saved model (``make train``).

* :mod:`.run`: the training recipe, top to bottom (config -> data -> models -> train -> save).
* :mod:`.data`: preference-data loading, validation, normalisation, mixing and splitting.
* :mod:`.tokenization`: chat-template tokenisation, truncation, padding and packing.
* :mod:`.models`: the tokenizer, the policy and the frozen reference model.
* :mod:`.trainer`: ``UniDPOTrainer``, with :mod:`.losses` (Uni-DPO, DPO, SimPO) and
  :mod:`.logprobs` (per-sequence completion log-probabilities).
* :mod:`.packed_attention`: the ``packed_varlen`` attention for padding-free batches.
* :mod:`.ref_cache`: the on-disk cache of precomputed reference log-probs.
* :mod:`.checkpoints`: output folders, checkpoints and resuming.
* :mod:`.merge`: LoRA adapters merged into shippable models (``make merge``).
* :mod:`.toy`: the tiny tokenizer and model built offline (``toy:<name>``: the default run, the tests).

Kept light on purpose: nothing is imported here, so importing a module of this package
does not pull in the others.
"""
