"""Multiple-choice and open answers: ScienceQA letter parsing, MMBench circular evaluation, MMMU's answer parsing.

- ScienceQA (LLaVA ``eval_science_qa.py``): the answer is the letter itself, "X. ..." or "The answer is X.";
  anything else fails (scored wrong).
- MMBench: a question is asked once per option with the options rotated; it counts as correct only if every
  rotation is answered correctly (circular evaluation). Letters are read as ``infer_option`` does (VLMEvalKit's
  ``can_infer``: a lone option letter, else exactly one option text found in the answer).
- MMMU (``MMMU-Benchmark/MMMU`` ``eval_utils.py``): ``parse_multi_choice_response`` / ``parse_open_response`` /
  ``eval_open``; where the reference guesses a random letter for an unparsable answer, a seeded
  ``random.Random`` guesses (reproducible).
"""

from __future__ import annotations

import random
import re
import string
from collections import defaultdict

LETTERS = string.ascii_uppercase
_THE_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def parse_sqa_letter(prediction: str, n_options: int) -> str | None:
    """ScienceQA's parse: "B", "B. text" or "... The answer is B." -> "B"; None when it fails."""
    options = LETTERS[:n_options]
    if prediction in options:
        return prediction
    if len(prediction) >= 3 and prediction[0] in options and prediction[1:3] == ". ":
        return prediction[0]
    found = _THE_ANSWER_IS.findall(prediction)
    return found[0] if len(found) == 1 else None


def infer_option(prediction: str, choices: list[str]) -> str | None:
    """MMBench's reading of an answer: one option letter standing alone (after punctuation is stripped), else the
    one option whose text appears in the answer; None if ambiguous or absent."""
    letters = LETTERS[:len(choices)]
    words = re.sub(r"[^\w\s]", " ", prediction).split()
    found = {w for w in words if w in letters}
    if len(found) == 1 and (len(words) <= 3 or len(found) == len([w for w in words if len(w) == 1])):
        return found.pop()
    texts = [letters[i] for i, c in enumerate(choices) if c and str(c).lower() in prediction.lower()]
    return texts[0] if len(texts) == 1 else None


def rotations(choices: list[str], answer: int) -> list[tuple[list[str], int]]:
    """The circular variants of a question: options shifted by 0..n-1, with the answer's new index."""
    n = len(choices)
    return [(choices[k:] + choices[:k], (answer - k) % n) for k in range(n)]


def circular_accuracy(results: list[tuple[str, bool]]) -> dict[str, float]:
    """(question id, correct) per asked variant -> {"circular": all variants right, "vanilla": first variant right}."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for qid, correct in results:
        groups[qid].append(bool(correct))
    if not groups:
        return {"circular": 0.0, "vanilla": 0.0}
    return {"circular": sum(all(v) for v in groups.values()) / len(groups),
            "vanilla": sum(v[0] for v in groups.values()) / len(groups)}


# ---- MMMU -----------------------------------------------------------------------------------------------------
def parse_mmmu_choice(response: str, all_choices: list[str], index2ans: dict[str, str],
                      rng: random.Random | None = None) -> str:
    """MMMU's ``parse_multi_choice_response``: "(A)" or " A " mentions, else option texts in a long answer (the last
    mentioned wins), else a random letter."""
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, with_brackets = True, False
    candidates = [c for c in all_choices if f"({c})" in response]
    with_brackets = bool(candidates)
    if not candidates:
        candidates = [c for c in all_choices if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [i for i, ans in index2ans.items() if ans.lower() in response.lower()]
        index_ans = not candidates
    if not candidates:
        return (rng or random.Random(0)).choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    if index_ans:
        starts = [response.rfind(f"({c})" if with_brackets else f" {c} ") for c in candidates]
    else:
        starts = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (starts[i], -i))]


def _extract_numbers(text: str) -> list[str]:
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + scientific + simple


def _normalize_str(text: str) -> list:
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        text = text.lower()
        return [" " + text, text + " "] if len(text) == 1 else [text]


def parse_mmmu_open(response: str) -> list:
    """MMMU's ``parse_open_response``: the shortest tails after key phrases ("so ", "is ", ...; "=" in the last
    sentence) plus the numbers in them, normalised (numbers as floats rounded to 2 decimals, text lower case)."""
    response = response.strip().strip(".").lower()
    # the reference splits the lower-cased text on ". " before a capital: only newlines split in effect
    subs = re.split(r"\.\s(?=[A-Z])|\n", response)
    indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
    keys = []
    for index, resp in enumerate(subs):
        if index == len(subs) - 1:
            indicators = indicators + ["="]
        shortest = None
        for ind in indicators:
            if ind in resp:
                tail = resp.split(ind)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", ":", "'"]:
            keys.append(shortest)
    keys = keys or [response]
    preds = list(keys)
    for k in keys:
        preds.extend(_extract_numbers(k))
    out = []
    for p in preds:
        out.extend(_normalize_str(p))
    return list(dict.fromkeys(out))


def mmmu_open_correct(answer: str | list[str], preds: list) -> bool:
    """MMMU's ``eval_open``: a parsed number equal to a normalised answer, or a normalised text answer contained in
    a parsed string."""
    norm = [x for a in (answer if isinstance(answer, list) else [answer]) for x in _normalize_str(a)]
    for p in preds:
        if isinstance(p, str):
            if any(isinstance(a, str) and a in p for a in norm):
                return True
        elif p in norm:
            return True
    return False
