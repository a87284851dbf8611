"""The authors' math stops (generation/prompts.py), on the real Qwen2.5-Math and Llama-3
tokenizers: generation ends on <|im_end|> (151645) and <|endoftext|> (151643) whatever the
tokenizer's eos, and text written after <|im_end|> is not graded."""

import pytest

import real_tokenizers
from alignment_unidpo.evaluation.options import Options, decoding_of
from alignment_unidpo.generation.decoding import completion, end_token_ids, stop_ids
from alignment_unidpo.generation.graders import GRADERS

MATH = decoding_of(Options(suite="math"))


@pytest.fixture(scope="module")
def cache():
    try:
        return real_tokenizers.ensure_cache()
    except real_tokenizers.Unavailable as err:
        pytest.skip(str(err))


class NoGenerationConfig:
    generation_config = None


def test_math_decoding_stops_on_both_qwen_end_tokens_whatever_the_tokenizers_eos(cache):
    qwen_math = real_tokenizers.qwen25(cache, eos_token="<|endoftext|>", math=True)  # Qwen2.5-Math's own eos
    assert qwen_math.eos_token_id == 151643
    assert stop_ids(qwen_math, MATH) == [151645, 151643]
    assert set(end_token_ids(NoGenerationConfig(), qwen_math, MATH)) == {151645, 151643}
    assert MATH.stop == ("</s>", "<|im_end|>", "<|endoftext|>") and MATH.max_new_tokens == 3000
    # the textual suites keep the model's own end tokens only
    assert stop_ids(qwen_math, decoding_of(Options(suite="alpacaeval"))) == []


def test_text_after_im_end_is_not_graded(cache):
    qwen_math = real_tokenizers.qwen25(cache, eos_token="<|endoftext|>", math=True)
    first = qwen_math.encode("So the answer is \\boxed{1}.", add_special_tokens=False)
    rest = qwen_math.encode("\nuser\nAnother question? The answer is \\boxed{2}.", add_special_tokens=False)
    ids = first + [151645] + rest + [151643]
    ends = end_token_ids(NoGenerationConfig(), qwen_math, MATH)
    answer = completion(qwen_math, ids, ends, MATH)
    assert answer["token_ids"] == first + [151645] and answer["finished"]
    assert answer["output"] == "So the answer is \\boxed{1}."
    assert GRADERS["qwen_math"].grade(answer["output"], "1", 5, "math500").correct
    # stopping on the tokenizer's eos alone (what generation did before) grades the later box
    eos_only = completion(qwen_math, ids, [qwen_math.eos_token_id], decoding_of(Options(suite="alpacaeval")))
    assert GRADERS["qwen_math"].grade(eos_only["output"], "2", 5, "math500").correct


def test_a_vocabulary_without_the_qwen_tokens_adds_no_stop_ids(cache):
    llama3 = real_tokenizers.llama3(cache)
    assert stop_ids(llama3, MATH) == []
    assert end_token_ids(NoGenerationConfig(), llama3, MATH) == [llama3.eos_token_id]
