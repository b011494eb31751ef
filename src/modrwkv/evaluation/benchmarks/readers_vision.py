"""Readers of the vision benchmarks' official local release formats -> ``Record`` lists.

Prompts follow LLaVA-1.5's evaluation (a short-answer or an option-letter instruction after the question).
"""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

from modrwkv.modalities import get_modality

from .choice_metric import LETTERS, rotations
from .records import BenchmarkFilesMissing, Record, require

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
TAG = get_modality("image").tag + "\n"


def _limit(records: list[Record], limit: int | None) -> list[Record]:
    return records if limit is None else records[:limit]


def read_vqav2(root: Path, split: str = "val2014", limit: int | None = None) -> list[Record]:
    """VQAv2: ``v2_OpenEnded_mscoco_<split>_questions.json``, ``v2_mscoco_<split>_annotations.json`` and the COCO
    images ``<split>/COCO_<split>_<image_id:012d>.jpg``; refs hold the ten human answers."""
    q_name, a_name = f"v2_OpenEnded_mscoco_{split}_questions.json", f"v2_mscoco_{split}_annotations.json"
    qf, af, images = require(root, "vqav2", q_name, a_name, split, layout=f"{q_name}, {a_name}, {split}/*.jpg")
    answers = {a["question_id"]: a for a in json.loads(af.read_text())["annotations"]}
    out = []
    for q in json.loads(qf.read_text())["questions"]:
        ann = answers.get(q["question_id"])
        if ann is None:
            raise BenchmarkFilesMissing(f"benchmark vqav2: question {q['question_id']} of {qf} has no annotation in "
                                        f"{af} (test splits have none: evaluate on val2014)")
        out.append(Record(str(q["question_id"]), "image", images / f"COCO_{split}_{q['image_id']:012d}.jpg",
                          f"{TAG}{q['question']}\n{SHORT}",
                          {"answers": [a["answer"] for a in ann["answers"]], "answer_type": ann.get("answer_type")}))
        if limit is not None and len(out) >= limit:
            break
    return out


def read_textvqa(root: Path, split: str = "val", limit: int | None = None) -> list[Record]:
    """TextVQA: ``TextVQA_0.5.1_<split>.json`` ({"data": [...]}) and ``train_images/<image_id>.jpg`` (the val
    images ship in the train image archive)."""
    name = f"TextVQA_0.5.1_{split}.json"
    qf, images = require(root, "textvqa", name, "train_images", layout=f"{name}, train_images/*.jpg")
    out = [Record(str(d["question_id"]), "image", images / f"{d['image_id']}.jpg", f"{TAG}{d['question']}\n{SHORT}",
                  {"answers": list(d["answers"])}) for d in json.loads(qf.read_text())["data"]]
    return _limit(out, limit)


def read_gqa(root: Path, limit: int | None = None) -> list[Record]:
    """GQA test-dev balanced: ``testdev_balanced_questions.json`` ({question id: {imageId, question, answer}}) and
    ``images/<imageId>.jpg``."""
    qf, images = require(root, "gqa", "testdev_balanced_questions.json", "images",
                         layout="testdev_balanced_questions.json, images/*.jpg")
    out = [Record(str(qid), "image", images / f"{q['imageId']}.jpg", f"{TAG}{q['question']}\n{SHORT}",
                  {"answer": q["answer"]}) for qid, q in json.loads(qf.read_text()).items()]
    return _limit(out, limit)


def _options_text(choices: list[str], style: str = "{letter}. {text}") -> str:
    return "\n".join(style.format(letter=LETTERS[i], text=c) for i, c in enumerate(choices))


def read_scienceqa(root: Path, split: str = "test", limit: int | None = None) -> list[Record]:
    """ScienceQA, image subset: ``problems.json`` ({pid: {question, choices, answer, hint, image, split}}) and
    ``images/<split>/<pid>/image.png`` (or ``<split>/<pid>/image.png``, as the release's archives unpack); only
    problems of ``split`` with an image are kept (SQA-IMG)."""
    (pf,) = require(root, "sqa_img", "problems.json", layout="problems.json, images/<split>/<pid>/image.png")
    images = Path(root) / "images" / split
    if not images.is_dir() and (Path(root) / split).is_dir():
        images = Path(root) / split
    out = []
    for pid, p in json.loads(pf.read_text()).items():
        if p.get("split") != split or not p.get("image"):
            continue
        context = f"Context: {p['hint']}\n" if p.get("hint") else ""
        prompt = f"{TAG}{context}{p['question']}\n{_options_text(p['choices'])}\n{LETTER}"
        out.append(Record(str(pid), "image", images / str(pid) / p["image"], prompt,
                          {"answer": LETTERS[int(p["answer"])], "n_options": len(p["choices"])}))
    if not out:
        raise BenchmarkFilesMissing(f"benchmark sqa_img: {pf} has no {split!r} problem with an image")
    return _limit(out, limit)


POPE_SPLITS = ("random", "popular", "adversarial")


def read_pope(root: Path, splits: tuple[str, ...] = POPE_SPLITS, limit: int | None = None) -> list[Record]:
    """POPE: ``coco_pope_<split>.json`` (one json object per line: question_id, image, text, label) for the random /
    popular / adversarial splits, and the COCO images ``val2014/<image>``."""
    names = [f"coco_pope_{s}.json" for s in splits]
    *files, images = require(root, "pope", *names, "val2014", layout=f"{', '.join(names)}, val2014/*.jpg")
    out = []
    for split, f in zip(splits, files):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        out += _limit([Record(f"{split}-{r['question_id']}", "image", images / r["image"],
                              f"{TAG}{r['text']}\n{SHORT}", {"label": r["label"], "split": split}) for r in rows],
                      limit)
    return out


def read_mmbench(root: Path, file: str = "MMBench_DEV_EN.tsv", circular: bool = True,
                 limit: int | None = None) -> list[Record]:
    """MMBench: the TSV (index, question, hint, A..E, answer, category, image as base64; an image cell may instead
    hold the index of the row with the picture). Each question is asked once per option rotation when ``circular``
    (rows with index >= 1e6 are the release's own circular copies and are skipped: the rotations are made here)."""
    import pandas as pd

    (tf,) = require(root, "mmbench", file, layout=f"{file} (tab-separated, base64 images)")
    frame = pd.read_csv(tf, sep="\t", dtype=str, keep_default_na=False)
    images = dict(zip(frame["index"], frame["image"]))
    out = []
    for _, row in frame.iterrows():
        if int(row["index"]) >= 1_000_000:
            continue
        choices = [row[c] for c in LETTERS[:5] if c in row and row[c] not in ("", "nan")]
        image = row["image"]
        while image in images and len(image) < 16:  # a reference to another row's image
            image = images[image]
        answer = LETTERS.index(row["answer"].strip())
        hint = f"{row['hint']}\n" if row.get("hint", "") not in ("", "nan") else ""
        variants = rotations(choices, answer) if circular else [(choices, answer)]
        picture = base64.b64decode(image)  # one copy shared by the rotations
        for k, (opts, ans) in enumerate(variants):
            prompt = f"{TAG}{hint}{row['question']}\n{_options_text(opts)}\n{LETTER}"
            out.append(Record(f"{row['index']}-{k}", "image", picture, prompt,
                              {"question": row["index"], "answer": LETTERS[ans], "choices": opts,
                               "category": row.get("category", "")}))
        if limit is not None and len({r.ref["question"] for r in out}) >= limit:
            break
    return out


def _mmmu_answer(text: str):
    text = str(text)
    if text.startswith("["):
        try:
            return [str(a) for a in ast.literal_eval(text)]
        except (ValueError, SyntaxError):
            return text
    return text


def read_mmmu(root: Path, split: str = "validation", limit: int | None = None) -> list[Record]:
    """MMMU: the parquet files of ``split`` (``<Subject>/<split>-*.parquet``: id, question, options, answer,
    question_type, image_1..image_7 as {bytes, path}). The model reads one image: image_1 (``ref['n_images']``
    says how many the question has)."""
    import pandas as pd

    files = sorted(Path(root).rglob(f"{split}-*.parquet")) if Path(root).is_dir() else []
    if not files:
        raise BenchmarkFilesMissing(f"benchmark mmmu: no {split}-*.parquet under {root}; expected the release's "
                                    f"<Subject>/{split}-00000-of-00001.parquet files (set benchmark.root=<folder>)")
    out = []
    for f in files:
        for _, row in pd.read_parquet(f).iterrows():
            images = [row.get(f"image_{i}") for i in range(1, 8)]
            images = [im for im in images if isinstance(im, dict) and im.get("bytes")]
            if not images:
                continue
            options = ast.literal_eval(row["options"]) if row["options"] else []
            if row["question_type"] == "multiple-choice":
                prompt = f"{TAG}{row['question']}\n\n{_options_text(options, '({letter}) {text}')}\n\n{LETTER}"
            else:
                prompt = f"{TAG}{row['question']}\n\n{SHORT}"
            out.append(Record(str(row["id"]), "image", images[0]["bytes"], prompt,
                              {"answer": _mmmu_answer(row["answer"]), "question_type": row["question_type"],
                               "options": [str(o) for o in options], "n_images": len(images)}))
    return _limit(out, limit)
