"""Generation and grading, shared by ``make data`` and ``make eval`` (neither imports the other).

* :mod:`.decoding`: loading a model for generation, chat-template prompts, batched ``transformers`` decoding.
* :mod:`.prompts`: the paper's math prompt (Tab. C.2).
* :mod:`.math_grading`: final-answer extraction and equivalence grading (math-verify).
"""
