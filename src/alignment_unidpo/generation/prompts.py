"""The paper's math prompt (Tab. C.2), for training data and evaluation alike."""

from __future__ import annotations

MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
MATH_USER_TEMPLATE = "{question} Let's think step by step and output the final answer within \\boxed{{}}"


def math_conversation(question: str) -> list[dict[str, str]]:
    """The Tab. C.2 prompt for one problem, as chat messages (system + user)."""
    return [{"role": "system", "content": MATH_SYSTEM_PROMPT},
            {"role": "user", "content": MATH_USER_TEMPLATE.format(question=question)}]


# How the authors end a math answer (their evaluation follows Qwen2.5-Math's math_eval.py, prompt
# type qwen25-math-cot): vLLM stop strings "</s>", "<|im_end|>", "<|endoftext|>", and for Qwen2
# models the ids 151645 and 151643, which are <|im_end|> and <|endoftext|>, whatever the
# tokenizer's own eos (Qwen2.5-Math's is <|endoftext|>: without the first, text written after
# <|im_end|> would be graded and its last \boxed{} would win). Here the two are named by their
# text, so any model whose vocabulary has them stops on them.
MATH_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
MATH_STOP_STRINGS = ("</s>", "<|im_end|>", "<|endoftext|>")
