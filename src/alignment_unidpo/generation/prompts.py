"""The paper's math prompt (Tab. C.2), for training data and evaluation alike."""

from __future__ import annotations

MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
MATH_USER_TEMPLATE = "{question} Let's think step by step and output the final answer within \\boxed{{}}"


def math_conversation(question: str) -> list[dict[str, str]]:
    """The Tab. C.2 prompt for one problem, as chat messages (system + user)."""
    return [{"role": "system", "content": MATH_SYSTEM_PROMPT},
            {"role": "user", "content": MATH_USER_TEMPLATE.format(question=question)}]
