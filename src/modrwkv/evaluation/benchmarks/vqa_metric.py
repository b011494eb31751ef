"""VQAv2 accuracy (also TextVQA's) and GQA exact match, as the official evaluation code computes them.

VQAv2 (GT-Vision-Lab/VQA ``vqaEval.py``): the prediction is stripped of newlines/tabs, then punctuation is removed
(``process_punctuation``) and number words, articles and contractions are normalised (``process_digit_article``).
The ten human answers are punctuation-processed only when they are not all identical (the annotation file already
holds normalised answers). Accuracy is the mean over the ten leave-one-annotator-out subsets of
``min(#matches among the other nine / 3, 1)``.
"""

from __future__ import annotations

import re

# the reference's contraction table: an apostrophe-less spelling -> the official one
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
DIGITS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
          "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!")
# the reference's pattern as written: "(?!<=\d)" is a lookahead (always true before a period), so this removes
# every period not followed by a digit ("3." -> "3", "1.5" kept)
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")  # EvalAI's variant: also "1,,2"
# the reference passes re.UNICODE (= 32) where re.sub takes its count: at most 32 periods are removed
_PERIOD_COUNT = int(re.UNICODE)


def process_punctuation(text: str, comma_strip: re.Pattern = _COMMA_STRIP) -> str:
    """Delete a punctuation mark when it touches a space (or the text has a digit,digit comma), else turn it into a
    space; then remove periods not followed by a digit."""
    out = text
    has_digit_comma = comma_strip.search(text) is not None
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """Lower case; number words zero..ten (and "none") -> digits; articles dropped; contractions given apostrophes."""
    words = [DIGITS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(text: str, comma_strip: re.Pattern = _COMMA_STRIP) -> str:
    """The full normalisation the reference applies to a predicted answer."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text, comma_strip))


def _leave_one_out(pred: str, gts: list[str]) -> float:
    """Mean over annotators i of min(#(answers j != i equal to pred) / 3, 1)."""
    scores = [min(1.0, sum(1 for j, g in enumerate(gts) if j != i and g == pred) / 3) for i in range(len(gts))]
    return sum(scores) / len(scores)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """VQAv2 accuracy of one prediction against the (ten) human answers, in [0, 1]."""
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    gts = [process_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    return _leave_one_out(normalize_vqa_answer(prediction), gts)


def evalai_normalize(text: str) -> str:
    """EvalAI's answer processor (TextVQA's evaluator): lower case, commas and question marks dropped, "'s" split
    off, then the VQA normalisation."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return normalize_vqa_answer(text, EVALAI_COMMA_STRIP)


def textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """TextVQA accuracy: VQA's leave-one-annotator-out score with prediction and answers through EvalAI's processor."""
    if not answers:
        raise ValueError("textvqa_accuracy needs at least one human answer")
    return _leave_one_out(evalai_normalize(prediction), [evalai_normalize(a) for a in answers])


def gqa_match(prediction: str, answer: str) -> float:
    """GQA accuracy of one prediction: exact match after LLaVA's conversion (trailing period dropped, lower case),
    as GQA's ``eval.py`` then compares ``prediction == answer``."""
    return float(prediction.strip().rstrip(".").lower() == answer)
