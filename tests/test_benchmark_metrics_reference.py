"""Our metric code against reference implementations that lmms-eval ships (EvalAI's answer processor, MMMU's
open-answer parsing at the MMMU repository's commit 51ce7f3), case by case. Needs the optional extra
(``pip install -e .[eval]``)."""

from __future__ import annotations

import pytest

from modrwkv.evaluation.benchmarks import vqa_metric
from modrwkv.evaluation.benchmarks.choice_metric import mmmu_open_correct, parse_mmmu_open

vqa_ref = pytest.importorskip("lmms_eval.tasks._task_utils.vqa_eval_metric",
                              reason="lmms-eval is not installed: pip install -e .[eval]")
mmmu_ref = pytest.importorskip("lmms_eval.tasks.mmmu.utils", reason="lmms-eval is not installed")

ANSWERS = ["Two", "yes", "Yes.", "dont", "don't", "none", "1,000", "1,,000", "3.", "3.5", "the red one", "t-shirt",
           "well-known -ish", "(2)", "a/b", "It's STOP?", "hes happy!", "Coca-Cola", "  a\ndog\t", "10 dogs.",
           "ten", "an apple, a pear", "#1 fan", "U.S.A.", "what's up?", "i'm ok", "Ive", "5:30", "50%", "$3.50"]


@pytest.mark.parametrize("text", ANSWERS)
def test_vqa_normalisation_matches_evalai(text):
    ref = vqa_ref.EvalAIAnswerProcessor()
    assert vqa_metric.process_punctuation(text, vqa_metric.EVALAI_COMMA_STRIP) == ref.process_punctuation(text)
    assert vqa_metric.process_digit_article(text) == ref.process_digit_article(text)
    assert vqa_metric.evalai_normalize(text) == ref(text)


def test_vqav2_comma_rule_differs_from_evalai_only_on_repeated_commas():
    ref = vqa_ref.EvalAIAnswerProcessor()
    assert vqa_metric.process_punctuation("1,,000") == "1  000"  # vqaEval.py: (\\d)(,)(\\d) needs one comma
    assert ref.process_punctuation("1,,000") == "1000"
    assert all(vqa_metric.process_punctuation(t) == ref.process_punctuation(t) for t in ANSWERS if ",," not in t)


def test_tables_match_evalai():
    assert vqa_metric.CONTRACTIONS == vqa_ref.EvalAIAnswerProcessor.CONTRACTIONS
    # the reference's setdefault adds every word it sees to its map as word -> word: compare the real entries
    assert vqa_metric.DIGITS == {k: v for k, v in vqa_ref.EvalAIAnswerProcessor.NUMBER_MAP.items() if k != v}
    assert list(vqa_metric.PUNCTUATION) == vqa_ref.EvalAIAnswerProcessor.PUNCTUATIONS


RESPONSES = ["The answer is 3,000.", "So the city is Paris", "2 + 3 = 5", "x", "It is 1.5e3 metres.\nSo 1500",
             "The result is -4.25, therefore -4.25", "Answer: blue", "", "final answer 7 apples", "24/7"]


@pytest.mark.parametrize("response", RESPONSES)
def test_mmmu_open_parsing_matches_the_reference(response):
    ours = parse_mmmu_open(response)
    ref = mmmu_ref.parse_open_response(response)
    assert set(ours) == set(ref)
    for gold in ("3000", "Paris", "5", "x", "1500", "-4.25", "blue", "7", ["24/7", "24 / 7"]):
        assert mmmu_open_correct(gold, ours) == mmmu_ref.eval_open(gold, ref), gold
