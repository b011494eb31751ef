"""The benchmarks' official metrics on hand-computed cases, including the reference implementations' quirks."""

from __future__ import annotations

import random

import numpy as np
import pytest

from modrwkv.evaluation.benchmarks import (
    cer,
    circular_accuracy,
    gqa_match,
    infer_option,
    mmmu_open_correct,
    parse_mmmu_choice,
    parse_mmmu_open,
    parse_sqa_letter,
    pope_scores,
    rotations,
    scaled_errors,
    textvqa_accuracy,
    vqa_accuracy,
    wer,
)


@pytest.mark.parametrize("pred,answers,expected", [
    ("Two", ["2"] * 10, 1.0),  # number word -> digit, lower case
    ("yes", ["yes"] * 2 + ["no"] * 8, 0.6),  # (2 * 1/3 + 8 * 2/3) / 10
    ("Yes.", ["yes"] * 2 + ["no"] * 8, 0.6),  # trailing period stripped
    ("yes", ["yes"] * 3 + ["no"] * 7, 0.9),  # (3 * 2/3 + 7 * 1) / 10
    ("yes", ["yes"] * 4 + ["no"] * 6, 1.0),
    ("no", ["yes"] * 10, 0.0),
    ("dont", ["don't"] * 10, 1.0),  # contraction table
    ("none", ["0"] * 10, 1.0),  # "none" -> "0"
    ("1,000", ["1000"] * 10, 1.0),  # a digit,digit comma: every mark deleted, not spaced
    ("3.", ["3"] * 10, 1.0),  # a period not before a digit goes
    ("3.5", ["3.5"] * 10, 1.0),  # ... one before a digit stays
    ("the red one", ["red 1"] * 2 + ["red"] * 8, 0.6),  # article dropped, one -> 1
    ("well-known -ish", ["wellknown ish"] * 10, 1.0),  # "-" touches a space: all hyphens deleted
    ("well-known", ["well known"] * 10, 1.0),  # ... else a hyphen becomes a space
    ("t-shirt", ["t-shirt"] * 10, 0.0),  # identical human answers are not punctuation-processed (reference quirk)
    ("t-shirt", ["t-shirt"] * 9 + ["shirt"], 1.0),  # differing ones are: "t-shirt" -> "t shirt"
    ("  a\ndog\t", ["dog"] * 10, 1.0),  # newlines/tabs -> spaces, stripped
])
def test_vqa_accuracy(pred, answers, expected):
    assert vqa_accuracy(pred, answers) == pytest.approx(expected)


def test_textvqa_normalises_the_answers_too():
    assert textvqa_accuracy("coca cola", ["The Coca-Cola"] * 10) == 1.0
    assert vqa_accuracy("coca cola", ["The Coca-Cola"] * 10) == 0.0
    assert textvqa_accuracy("It's", ["it 's"] * 3 + ["its"] * 7) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("x", [])


def test_gqa_exact_match():
    assert gqa_match("Yes.", "yes") == 1.0 and gqa_match(" left ", "left") == 1.0
    assert gqa_match("the table", "table") == 0.0


@pytest.mark.parametrize("pred,expected", [("B", "B"), ("B. a dog", "B"), ("I see. The answer is C.", "C"),
                                           ("D", None), ("b", None), ("B.a dog", None),
                                           ("The answer is A. The answer is B.", None)])
def test_scienceqa_letter(pred, expected):
    assert parse_sqa_letter(pred, 3) == expected


def test_mmbench_option_reading_and_circular():
    choices = ["cat", "dog"]
    assert infer_option("B", choices) == "B" and infer_option("(A) cat", choices) == "A"
    assert infer_option("I think it is the dog", choices) == "B"  # the one option text in the answer
    assert infer_option("cat or dog", choices) is None and infer_option("A or B", choices) is None
    assert rotations(["a", "b", "c"], 1) == [(["a", "b", "c"], 1), (["b", "c", "a"], 0), (["c", "a", "b"], 2)]
    scores = circular_accuracy([("q1", True), ("q1", True), ("q2", True), ("q2", False), ("q3", False), ("q3", True)])
    assert scores == {"circular": pytest.approx(1 / 3), "vanilla": pytest.approx(2 / 3)}


def test_mmmu_multiple_choice():
    letters, opts = ["A", "B", "C", "D"], {"A": "green pear", "B": "red apple", "C": "plum", "D": "fig"}
    assert parse_mmmu_choice("(B)", letters, opts) == "B"
    assert parse_mmmu_choice("The answer is C.", letters, opts) == "C"
    assert parse_mmmu_choice("I believe the correct one is the red apple here", letters, opts) == "B"
    assert parse_mmmu_choice("(A) looks wrong, so (D)", letters, opts) == "D"  # the last one mentioned
    guess = parse_mmmu_choice("no idea", letters, opts, random.Random(3))
    assert guess in letters and guess == parse_mmmu_choice("no idea", letters, opts, random.Random(3))


def test_mmmu_open_answers():
    preds = parse_mmmu_open("The answer is 3,000.")
    assert 3000.0 in preds
    assert mmmu_open_correct("3000", preds) and not mmmu_open_correct("30", preds)
    assert parse_mmmu_open("So the city is Paris") == ["paris"]
    assert mmmu_open_correct("Paris", ["paris"]) and mmmu_open_correct(["Rome", "Paris"], ["in paris"])
    assert not mmmu_open_correct("x", ["x"])  # one-letter answers must stand apart: " x" / "x " (reference rule)
    assert parse_mmmu_open("2 + 3 = 5") == [5.0]  # "=" counts in the last sentence


def test_pope_scores():
    preds = ["Yes, there is.", "No.", "There is not a dog", "yes", "I see no cat", "Nothing."]
    labels = ["yes", "no", "yes", "no", "no", "yes"]
    # read as yes, no, no, yes, no, yes ("Nothing" has no "no" word): TP 2, FP 1, FN 1, TN 2
    scores = pope_scores(preds, labels)
    assert scores == pytest.approx({"accuracy": 4 / 6, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3,
                                    "yes_ratio": 0.5})
    with pytest.raises(ValueError, match="as many"):
        pope_scores(["yes"], [])


def test_asr_error_rates():
    assert wer(["mister smith said color is not 25"], ["Mr. Smith said \"colour\" isn't twenty-five!"]) == 0.0
    assert wer(["hello world"], ["Hello there, world."]) == pytest.approx(1 / 3)
    assert wer(["cat dog", "bird"], ["cat dog", "fish frog"]) == pytest.approx(0.5)  # corpus level: 2 edits / 4
    assert cer(["今天天气好"], ["今天 天气很好。"]) == pytest.approx(1 / 6)  # spaces and punctuation ignored
    assert cer(["ＡＢ"], ["ab"]) == 0.0  # full-width and case folded


def test_forecast_errors_on_the_train_scale():
    out = scaled_errors([np.array([1.0, 2.0]), np.array([0.0])], [np.array([1.0, 4.0]), np.array([3.0])], [2.0, 1.5])
    assert out == pytest.approx({"mse": 5 / 3, "mae": 1.0})  # errors 0, -1 and -2 on the scaled axis
