"""Batched, padded log-probs equal a naive one-sequence-at-a-time computation."""

import torch

from alignment_unidpo.training.logprobs import sequence_logps
from alignment_unidpo.training.toy import build_toy_model
from alignment_unidpo.training.tokenization import IGNORE_INDEX, PreferenceCollator, tokenize_row, truncate_pair
from alignment_unidpo.training.trainer import model_sequence_logps


def rows():
    msgs = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    return [
        {"messages": msgs("Reverse: apple"), "chosen": "elppa", "rejected": "elp"},
        {"messages": msgs("A much longer prompt that will be cut from the left " * 2), "chosen": "ok",
         "rejected": "a long rejected answer that gets truncated on the right"},
        {"messages": [{"role": "system", "content": "sys"}] + msgs("hi"), "chosen": "hello there", "rejected": "no"},
    ]


def naive_logps(model, prompt_ids, answer_ids):
    """One unpadded sequence; float64 log-softmax at each answer position."""
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    total = sum(logp[len(prompt_ids) + j - 1, tok].item() for j, tok in enumerate(answer_ids))
    return total, total / len(answer_ids)


def test_truncation_cuts_prompt_left_then_answers_right():
    p, c, r = truncate_pair(list(range(10)), [100, 101, 102], [200] * 8, max_length=12, max_prompt_length=6)
    assert p == [4, 5, 6, 7, 8, 9]  # left cut to max_prompt_length
    assert c == [100, 101, 102] and r == [200] * 6  # right cut to the room left
    assert truncate_pair([1, 2], [3], [4], 12, 6) == ([1, 2], [3], [4])  # fits: untouched


def test_truncation_counts_an_answers_unlabelled_ids_as_its_own_prompt():
    """The rejected answer's first id ends its own prompt (its split came one id later): it is never
    cut, and each answer is cut with its own prompt's length, as trl does."""
    args = ([1] * 5, [10] * 8, [9] + [20] * 8)
    p, c, r = truncate_pair(*args, max_length=12, max_prompt_length=6, rule="fit", unlabelled=(0, 1))
    assert (p, c, r) == ([1] * 5, [10] * 7, [9] + [20] * 6)  # both sequences exactly 12
    p, c, r = truncate_pair(*args, max_length=12, max_prompt_length=6, rule="authors", unlabelled=(0, 1))
    assert (p, c, r) == ([1] * 5, [10] * 6, [9] + [20] * 6)  # 12 - 6 answer ids each
    # the prompt itself cut: 4 ids for the chosen answer's own prompt, 5 for the rejected's; the shared
    # prompt loses 5 (the one case where the chosen sequence keeps a prompt id fewer than trl's)
    p, c, r = truncate_pair(list(range(10)), [10] * 8, [9] + [20] * 8, 12, 6, rule="authors", unlabelled=(0, 1))
    assert (p, c, r) == ([5, 6, 7, 8, 9], [10] * 6, [9] + [20] * 6)


def test_batched_logps_equal_naive_per_sequence(toy_tokenizer):
    model = build_toy_model("toy:tiny-llama", toy_tokenizer).eval()
    feats = []
    for row in rows():
        f = tokenize_row(row, toy_tokenizer, max_length=80, max_prompt_length=48)
        feats.append({**f, "score_chosen": 1.0, "score_rejected": 0.0})
    assert any(f["truncated"] for f in feats), "the test must exercise truncation"
    batch = PreferenceCollator(pad_token_id=toy_tokenizer.pad_token_id, pad_to_multiple_of=8)(feats)
    assert (batch["attention_mask"] == 0).any(), "the test must exercise padding"
    with torch.no_grad():
        got = model_sequence_logps(model, batch)
    n = len(feats)
    for i, f in enumerate(feats):
        for half, key in ((0, "chosen_input_ids"), (1, "rejected_input_ids")):
            total, mean = naive_logps(model, f["prompt_input_ids"], f[key])
            j = half * n + i
            assert abs(got.sum[j].item() - total) < 1e-4
            assert abs(got.mean[j].item() - mean) < 1e-5
            assert got.num_tokens[j].item() == len(f[key])


def test_labels_mask_prompt_and_padding(toy_tokenizer):
    f = tokenize_row(rows()[0], toy_tokenizer, max_length=80, max_prompt_length=48)
    f2 = tokenize_row(rows()[2], toy_tokenizer, max_length=80, max_prompt_length=48)
    batch = PreferenceCollator(pad_token_id=toy_tokenizer.pad_token_id)(
        [{**f, "score_chosen": 1, "score_rejected": 0}, {**f2, "score_chosen": 1, "score_rejected": 0}]
    )
    assert batch["input_ids"].shape[0] == 4
    labels = batch["labels"][0]
    assert (labels[: len(f["prompt_input_ids"])] == IGNORE_INDEX).all()
    assert labels[len(f["prompt_input_ids"])].item() == f["chosen_input_ids"][0]
    assert ((batch["attention_mask"] == 0) <= (batch["labels"] == IGNORE_INDEX)).all()


def test_chat_template_adds_no_second_bos_and_no_duplicate_system(toy_tokenizer):
    f = tokenize_row(rows()[2], toy_tokenizer, max_length=200, max_prompt_length=150)
    ids = f["prompt_input_ids"] + f["chosen_input_ids"]
    assert ids.count(toy_tokenizer.bos_token_id) == 1
    text = toy_tokenizer.decode(ids)
    assert text.count("system") == 1 and text.endswith("hello there<|im_end|>\n")


def test_logps_are_float32_for_bf16_logits():
    logits = torch.randn(2, 5, 11).to(torch.bfloat16)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, 5, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 1, 2, 3]])
    out = sequence_logps(logits, labels)
    assert out.sum.dtype == torch.float32
    assert out.num_tokens.tolist() == [3, 3]
