"""Evaluation like the paper (Tables 1 and 2): ``make eval RUN=...|MODEL=... SUITE=...``.

* :mod:`.benchmarks`: reading math benchmark files and grade-only prediction files.
* :mod:`.answers`: AlpacaEval 2, Arena-Hard v0.1 and SedarEval answer files, in their tools' formats.
* :mod:`.judges`: the paper's judges (gpt-4o-2024-05-13, the pinned prompts), their commands and inputs.
* :mod:`.eval_data`: ``make eval-data``, the evaluation sets at pinned commits, sha256-checked.
* :mod:`.item_log`: per-item results appended line by line, so a killed run resumes.
* :mod:`.models`: ``MODEL=...``, a hub id at a revision (its commit recorded) or a local folder.
* :mod:`.paper_numbers`: the paper's Tables 1, 2, D.6, D.7 and D.9, keyed by recipe.
* :mod:`.run_eval`: the ``make eval`` pipeline.
* :mod:`.vlm_suite`: ``SUITE=vlm``, Table D.4 through VLMEvalKit (its config, command and results).

Generation and the math grader live in :mod:`alignment_unidpo.generation`, shared with ``make data``.
"""
