""""Shapes VQA": a synthetic visual question answering set drawn with PIL, learnable by a tiny model in minutes.

Each image shows a few coloured shapes on a plain background; each sample asks one question about colour, shape,
count or relative position, with a one-word (or one-number) answer. Answers are balanced: for every question type
the answer is drawn from a shuffled "deck" of that type's vocabulary, so over any full deck each answer appears
equally often and the chance accuracy of a question-aware guesser is exactly ``chance_accuracy(config)``.

The ``difficulty`` knob picks a preset (``easy`` is the default experiment: one large shape, colour and shape
questions); any field can be overridden.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from modrwkv.data.schema import make_sample

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 30),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond")
QUESTION_TYPES = ("colour", "shape", "count", "position", "vertical")
_COLOUR_JITTER = 20  # per channel; small enough that the nearest base colour is always the named one


@dataclass(frozen=True)
class ShapesVQAConfig:
    """What the generator draws and asks. Use ``ShapesVQAConfig.preset(difficulty, **overrides)``."""

    image_size: int = 64
    difficulty: str = "easy"
    question_types: tuple[str, ...] = ("colour", "shape")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow")
    shapes: tuple[str, ...] = ("circle", "square", "triangle")
    grid: int = 1  # shapes sit in distinct cells of a grid x grid layout, so they never overlap
    min_shapes: int = 1
    max_shapes: int = 1
    max_count: int = 3  # answers of "count" questions are 1..max_count
    size_range: tuple[float, float] = (0.45, 0.75)  # shape size as a fraction of its cell
    extra: dict = field(default_factory=dict)

    @staticmethod
    def preset(difficulty: str = "easy", **overrides) -> ShapesVQAConfig:
        """The named preset (``easy``, ``medium``, ``hard``) with ``overrides`` applied."""
        presets = {
            "easy": {},
            "medium": dict(
                question_types=("colour", "shape", "count", "position"),
                colours=("red", "green", "blue", "yellow", "purple"),
                grid=3, min_shapes=1, max_shapes=4, max_count=3, size_range=(0.55, 0.85),
            ),
            "hard": dict(
                question_types=QUESTION_TYPES, colours=tuple(COLOURS), shapes=SHAPES,
                grid=4, min_shapes=2, max_shapes=7, max_count=4, size_range=(0.45, 0.8),
            ),
        }
        if difficulty not in presets:
            raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {sorted(presets)}")
        cfg = replace(ShapesVQAConfig(), difficulty=difficulty, **presets[difficulty])
        cfg = replace(cfg, **overrides)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise ValueError if the configuration cannot produce valid, unambiguous questions."""
        bad = [q for q in self.question_types if q not in QUESTION_TYPES]
        if bad or not self.question_types:
            raise ValueError(f"unknown question types {bad}; expected a subset of {QUESTION_TYPES}")
        for c in self.colours:
            if c not in COLOURS:
                raise ValueError(f"unknown colour {c!r}; expected a subset of {tuple(COLOURS)}")
        for s in self.shapes:
            if s not in SHAPES:
                raise ValueError(f"unknown shape {s!r}; expected a subset of {SHAPES}")
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size {self.image_size} outside 16..1024")
        cells = self.grid * self.grid
        if not 1 <= self.min_shapes <= self.max_shapes <= cells:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes <= grid*grid ({cells})")
        if "count" in self.question_types and self.max_count > min(self.max_shapes, cells):
            raise ValueError(f"max_count {self.max_count} > max_shapes {self.max_shapes}")
        if ({"position", "vertical"} & set(self.question_types)) and (self.grid < 2 or self.max_shapes < 2):
            raise ValueError("position questions need grid >= 2 and max_shapes >= 2")
        if ({"position", "vertical", "count"} & set(self.question_types)) and len(self.shapes) < 2:
            raise ValueError("these question types need at least 2 shapes kinds")


def answer_vocabulary(config: ShapesVQAConfig | None = None) -> dict[str, list[str]]:
    """The possible answers of each enabled question type (the trainer reports chance from this)."""
    config = config or ShapesVQAConfig.preset()
    vocab = {
        "colour": list(config.colours),
        "shape": list(config.shapes),
        "count": [str(k) for k in range(1, config.max_count + 1)],
        "position": ["left", "right"],
        "vertical": ["above", "below"],
    }
    return {q: vocab[q] for q in config.question_types}


def chance_accuracy(config: ShapesVQAConfig | None = None) -> float:
    """Accuracy of a guesser that knows the question type but not the image (types are equally frequent)."""
    vocab = answer_vocabulary(config)
    return float(np.mean([1.0 / len(v) for v in vocab.values()]))


class _Deck:
    """Draws items so that each full pass over the deck contains every item exactly once (balanced answers)."""

    def __init__(self, items: list, rng: random.Random):
        self.items, self.rng, self.pending = list(items), rng, []

    def draw(self):
        if not self.pending:
            self.pending = self.items[:]
            self.rng.shuffle(self.pending)
        return self.pending.pop()


def _plural(shape: str) -> str:
    return shape + "s"


def _scene_for(qtype: str, answer: str, cfg: ShapesVQAConfig, rng: random.Random) -> tuple[list[dict], str]:
    """Shapes (shape, colour, cell) consistent with ``answer`` and the question text."""
    cells = list(range(cfg.grid * cfg.grid))
    rng.shuffle(cells)

    def any_shape(exclude=()):
        return rng.choice([s for s in cfg.shapes if s not in exclude])

    def any_colour(exclude=()):
        return rng.choice([c for c in cfg.colours if c not in exclude])

    n = rng.randint(cfg.min_shapes, cfg.max_shapes)
    if qtype == "colour":
        target = any_shape()
        objs = [dict(shape=target, colour=answer)]
        objs += [dict(shape=any_shape([target]), colour=any_colour()) for _ in range(n - 1)]
        question = f"What colour is the {target}?"
    elif qtype == "shape":
        objs = [dict(shape=answer, colour=(colour := any_colour()))]
        objs += [dict(shape=any_shape(), colour=any_colour([colour])) for _ in range(n - 1)]
        question = f"What shape is the {colour} object?"
    elif qtype == "count":
        k = int(answer)
        target = any_shape()
        n = max(n, k)
        objs = [dict(shape=target, colour=any_colour()) for _ in range(k)]
        objs += [dict(shape=any_shape([target]), colour=any_colour()) for _ in range(n - k)]
        question = f"How many {_plural(target)} are there?"
    else:  # position (left/right) or vertical (above/below): two uniquely shaped objects in distinct columns/rows
        a = any_shape()
        b = any_shape([a])

        def coord(cell):  # the column for left/right questions, the row for above/below ones
            row, col = divmod(cell, cfg.grid)
            return col if qtype == "position" else row

        ca, cb = rng.choice([(i, j) for i in cells for j in cells if coord(i) != coord(j)])
        if (answer in ("left", "above")) != (coord(ca) < coord(cb)):
            ca, cb = cb, ca
        cells = [ca, cb] + [c for c in cells if c not in (ca, cb)]
        n = max(n, 2)
        objs = [dict(shape=a, colour=any_colour()), dict(shape=b, colour=any_colour())]
        if len(cfg.shapes) > 2:  # distractors must not repeat a or b, or "the {a}" would be ambiguous
            objs += [dict(shape=any_shape([a, b]), colour=any_colour()) for _ in range(n - 2)]
        relation = "left or right of" if qtype == "position" else "above or below"
        question = f"Is the {a} {relation} the {b}?"
    for obj, cell in zip(objs, cells):
        obj["cell"] = cell
    return objs, question


def _draw(objs: list[dict], cfg: ShapesVQAConfig, rng: random.Random):
    from PIL import Image, ImageDraw

    s = cfg.image_size
    grey = rng.randint(170, 245)
    bg = tuple(min(255, max(0, grey + rng.randint(-12, 12))) for _ in range(3))
    img = Image.new("RGB", (s, s), bg)
    draw = ImageDraw.Draw(img)
    cell = s / cfg.grid
    for obj in objs:
        row, col = divmod(obj["cell"], cfg.grid)
        size = cell * rng.uniform(*cfg.size_range)
        slack = (cell - size) / 2
        cx = (col + 0.5) * cell + rng.uniform(-slack, slack)
        cy = (row + 0.5) * cell + rng.uniform(-slack, slack)
        r = size / 2
        jitter = [rng.randint(-_COLOUR_JITTER, _COLOUR_JITTER) for _ in range(3)]
        fill = tuple(min(255, max(0, v + j)) for v, j in zip(COLOURS[obj["colour"]], jitter))
        if obj["shape"] == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif obj["shape"] == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif obj["shape"] == "triangle":
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
        else:  # diamond
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
        obj.update(x=round(cx / s, 4), y=round(cy / s, 4), size=round(size / s, 4))
    return img


def generate_shapes_vqa(n: int, seed: int = 0, config: ShapesVQAConfig | None = None) -> Iterator[dict]:
    """Yield ``n`` shapes-VQA samples (schema of docs/ARCHITECTURE.md), deterministic given ``seed`` and ``config``.

    meta: ``answer``, ``question_type``, ``difficulty`` and ``objects`` (the scene: shape, colour, centre, size).
    """
    cfg = config or ShapesVQAConfig.preset()
    cfg.check()
    rng = random.Random(f"shapes-vqa-{seed}")  # string seeds hash deterministically (not PYTHONHASHSEED-dependent)
    vocab = answer_vocabulary(cfg)
    types = _Deck(list(cfg.question_types), rng)
    decks = {q: _Deck(v, rng) for q, v in vocab.items()}
    for i in range(n):
        qtype = types.draw()
        answer = decks[qtype].draw()
        objs, question = _scene_for(qtype, answer, cfg, rng)
        image = _draw(objs, cfg, rng)
        meta = {"answer": answer, "question_type": qtype, "difficulty": cfg.difficulty, "objects": objs}
        conversation = [{"role": "user", "content": f"<image>\n{question}"}, {"role": "assistant", "content": answer}]
        yield make_sample(f"shapes-{seed}-{i:07d}", "image", image, conversation, meta)
