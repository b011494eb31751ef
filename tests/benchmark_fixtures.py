"""Tiny benchmark folders in each official release format, written by the tests (never real data).

Each writer returns the answers an oracle would give, in the reader's order, so a scorer fed them must give 100 %
(or an error of 0).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np


def _image(path: Path | None = None, seed: int = 0, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


def write_vqav2(root: Path) -> list[str]:
    qs = [{"image_id": 1, "question": "What colour is the cat?", "question_id": 10},
          {"image_id": 2, "question": "How many dogs?", "question_id": 20}]
    anns = [{"question_id": 10, "image_id": 1, "answer_type": "other", "question_type": "what color",
             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                         for i, a in enumerate(["black"] * 7 + ["grey"] * 3)]},
            {"question_id": 20, "image_id": 2, "answer_type": "number", "question_type": "how many",
             "answers": [{"answer": "2", "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)]}]
    root.mkdir(parents=True, exist_ok=True)
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": qs}))
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": anns}))
    for q in qs:
        _image(root / "val2014" / f"COCO_val2014_{q['image_id']:012d}.jpg", q["image_id"])
    return ["Black.", "two"]


def write_textvqa(root: Path) -> list[str]:
    data = [{"question_id": 5, "image_id": "abc", "question": "What brand?", "answers": ["Coca-Cola"] * 10}]
    root.mkdir(parents=True, exist_ok=True)
    (root / "TextVQA_0.5.1_val.json").write_text(json.dumps({"dataset_name": "textvqa", "data": data}))
    _image(root / "train_images" / "abc.jpg")
    return ["coca cola"]


def write_gqa(root: Path) -> list[str]:
    qs = {"201": {"imageId": "n1", "question": "Is it left?", "answer": "yes"},
          "202": {"imageId": "n2", "question": "What is on the table?", "answer": "cup"}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "testdev_balanced_questions.json").write_text(json.dumps(qs))
    for q in qs.values():
        _image(root / "images" / f"{q['imageId']}.jpg")
    return ["Yes.", "cup"]


def write_scienceqa(root: Path) -> list[str]:
    problems = {
        "1": {"question": "Which is a mammal?", "choices": ["trout", "whale", "frog"], "answer": 1, "hint": "",
              "image": "image.png", "split": "test"},
        "2": {"question": "Which is hot?", "choices": ["ice", "fire"], "answer": 1, "hint": "Look at it.",
              "image": None, "split": "test"},  # no image: not in SQA-IMG
        "3": {"question": "Pick A.", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png",
              "split": "train"},  # another split
        "4": {"question": "Which is blue?", "choices": ["sky", "grass"], "answer": 0, "hint": "A picture.",
              "image": "image.png", "split": "test"},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "problems.json").write_text(json.dumps(problems))
    for pid in ("1", "4"):
        _image(root / "images" / "test" / pid / "image.png", int(pid), "PNG")
    return ["B", "A. sky"]


def write_pope(root: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    answers = []
    for split in ("random", "popular", "adversarial"):
        rows = [{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a cat?",
                 "label": "yes"},
                {"question_id": 2, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a car?",
                 "label": "no"}]
        (root / f"coco_pope_{split}.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        answers += ["Yes, there is a cat.", "No."]
    _image(root / "val2014" / "COCO_val2014_000000000001.jpg")
    return answers


def write_mmbench(root: Path) -> list[str]:
    """Two questions (the second's image cell refers to the first row) and one circular copy row (skipped)."""
    import pandas as pd

    img = base64.b64encode(_image(fmt="PNG")).decode()
    rows = [{"index": 0, "question": "What animal?", "hint": "nan", "A": "cat", "B": "dog", "C": "cow", "D": "",
             "answer": "B", "category": "recognition", "image": img, "l2-category": "x", "split": "dev"},
            {"index": 1, "question": "Which colour?", "hint": "A hint.", "A": "red", "B": "blue", "C": "", "D": "",
             "answer": "A", "category": "attribute", "image": "0", "l2-category": "x", "split": "dev"},
            {"index": 1000000, "question": "What animal?", "hint": "nan", "A": "dog", "B": "cow", "C": "cat",
             "D": "", "answer": "A", "category": "recognition", "image": "0", "l2-category": "x", "split": "dev"}]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "MMBench_DEV_EN.tsv", sep="\t", index=False)
    # question 0 rotated: (cat dog cow) B, (dog cow cat) A, (cow cat dog) C; question 1: (red blue) A, (blue red) B
    return ["B", "A", "C", "A", "The answer is B"]


def write_mmmu(root: Path) -> list[str]:
    import pandas as pd

    img = {"bytes": _image(fmt="PNG"), "path": "x.png"}
    rows = [{"id": "validation_Art_1", "question": "<image 1> Which style?", "options": "['Baroque', 'Cubism']",
             "explanation": "", "image_1": img, "image_2": None, "img_type": "['Paintings']", "answer": "B",
             "topic_difficulty": "Easy", "question_type": "multiple-choice", "subfield": "Art"},
            {"id": "validation_Art_2", "question": "<image 1> How many figures?", "options": "[]",
             "explanation": "", "image_1": img, "image_2": img, "img_type": "['Paintings']", "answer": "3",
             "topic_difficulty": "Easy", "question_type": "open", "subfield": "Art"}]
    (root / "Art").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "Art" / "validation-00000-of-00001.parquet")
    return ["(B) Cubism", "There are 3 figures, so the answer is 3"]


def _tone(seconds: float = 0.3, sr: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_librispeech(root: Path, split: str = "test-clean") -> list[str]:
    import soundfile as sf

    chapter = root / "LibriSpeech" / split / "84" / "121"
    chapter.mkdir(parents=True, exist_ok=True)
    lines = {"84-121-0000": "HELLO WORLD", "84-121-0001": "MISTER SMITH SAID TWENTY FIVE"}
    (chapter / "84-121.trans.txt").write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
    for k in lines:
        sf.write(chapter / f"{k}.flac", _tone(), 16000)
    return ["hello world", "Mr. Smith said 25."]


def write_aishell1(root: Path, split: str = "test") -> list[str]:
    import soundfile as sf

    (root / "transcript").mkdir(parents=True, exist_ok=True)
    (root / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\nBAC009S0764W0122 一二线 城市\n", encoding="utf-8")
    folder = root / "wav" / split / "S0764"
    folder.mkdir(parents=True, exist_ok=True)
    for utt in ("BAC009S0764W0121", "BAC009S0764W0122", "BAC009S0764W0199"):  # the last has no transcript
        sf.write(folder / f"{utt}.wav", _tone(), 16000)
    return ["甚至出现交易几乎停滞的情况。", "一二线城市"]


def write_forecast_csv(root: Path, file: str, rows: int, columns: int = 2) -> None:
    """A date + numeric columns CSV (Autoformer's layout) of smooth series with a level per column."""
    import pandas as pd

    t = np.arange(rows)
    data = {"date": pd.date_range("2016-07-01", periods=rows, freq="h").astype(str)}
    for c in range(columns):
        data[f"c{c}"] = 10.0 * (c + 1) + np.sin(t / 6.0 + c) + 0.01 * t
    data["OT"] = np.cos(t / 12.0)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(data).to_csv(root / file, index=False)
