"""Evaluation like the paper (Tables 1 and 2): ``make eval RUN=... SUITE=...``.

* :mod:`.math_grading`: answer extraction (the last ``\\boxed{}``) and equivalence with math-verify.
* :mod:`.benchmarks`: reading math benchmark files and grade-only prediction files.
* :mod:`.generation`: batched ``transformers`` generation with the chat template.
* :mod:`.answers`: AlpacaEval 2 and Arena-Hard v0.1 answer files, in their tools' formats.
* :mod:`.item_log`: per-item results appended line by line, so a killed run resumes.
* :mod:`.paper_numbers`: the paper's Tables 1 and 2, keyed by recipe.
* :mod:`.run_eval`: the ``make eval`` pipeline.
"""
