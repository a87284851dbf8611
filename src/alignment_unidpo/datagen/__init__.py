"""``make data``: on-policy preference data the paper's way (appendix C.2).

generate (N samples per prompt) -> score (reward model, external judge, math verifier,
PRM, or the preference world's noisy judge) -> normalise (none, linear, z-score -> normal
CDF -> 0-10, footnote 4) -> pair (best/worst, best correct vs worst incorrect, or the
authors' rule of their get_uni_dpo_data.py). :mod:`.pipeline` runs the
stages in order; each stage's output folder is keyed by a hash of the config parts it
depends on, and written in atomic shards, so a rerun continues where a kill stopped it.

Prompts come from a registered source (:mod:`.sources`), scores from a registered scorer
(:mod:`.scorers`); datagen registers its own, and a package above it adds more (the
preference world's prompts, SFT model and judge: :mod:`alignment_unidpo.world.plugins`).
The command is :mod:`alignment_unidpo.data_cli`.
"""
