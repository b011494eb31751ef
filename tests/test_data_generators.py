"""Offline generators: determinism, balance, consistency of answers with what is drawn or spoken."""

import io
import shutil
from collections import Counter

import numpy as np
import pytest

from modrwkv.data.shapes_vqa import COLOURS, ShapesVQAConfig, answer_vocabulary, chance_accuracy, generate_shapes_vqa


def _png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_shapes_deterministic_and_seed_dependent():
    a = list(generate_shapes_vqa(12, seed=3))
    b = list(generate_shapes_vqa(12, seed=3))
    c = list(generate_shapes_vqa(12, seed=4))
    assert [_png(s["image"]) for s in a] == [_png(s["image"]) for s in b]
    assert [(s["conversation"], s["meta"]) for s in a] == [(s["conversation"], s["meta"]) for s in b]
    assert [_png(s["image"]) for s in a] != [_png(s["image"]) for s in c]
    s = a[0]
    assert s["modality"] == "image" and s["image"].mode == "RGB" and s["image"].size == (64, 64)
    assert s["conversation"][0]["content"].startswith("<image>\n")
    assert s["conversation"][1] == {"role": "assistant", "content": s["meta"]["answer"]}


def test_shapes_answers_exactly_balanced():
    cfg = ShapesVQAConfig.preset("easy")
    samples = list(generate_shapes_vqa(240, seed=0, config=cfg))
    by_type = Counter(s["meta"]["question_type"] for s in samples)
    assert by_type == {"colour": 120, "shape": 120}
    vocab = answer_vocabulary(cfg)
    for qtype, answers in vocab.items():
        counts = Counter(s["meta"]["answer"] for s in samples if s["meta"]["question_type"] == qtype)
        assert set(counts) == set(answers)
        assert len(set(counts.values())) == 1, counts  # 120 is a multiple of 4 and of 3: exactly equal
    assert chance_accuracy(cfg) == pytest.approx((1 / 4 + 1 / 3) / 2)


def test_shapes_colour_answer_is_the_drawn_colour():
    cfg = ShapesVQAConfig.preset("easy", question_types=("colour",), image_size=96)
    for s in generate_shapes_vqa(40, seed=1, config=cfg):
        (obj,) = s["meta"]["objects"]
        # the triangle's bounding-box centre is inside it too (it spans the full height)
        px = np.array(s["image"].getpixel((int(obj["x"] * 96), int(obj["y"] * 96 + 2))))
        nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - px).sum())
        assert nearest == s["meta"]["answer"] == obj["colour"]


def test_shapes_hard_answers_match_scene():
    cfg = ShapesVQAConfig.preset("hard", image_size=128)
    types = Counter()
    for s in generate_shapes_vqa(200, seed=2, config=cfg):
        meta, q = s["meta"], s["conversation"][0]["content"]
        objs, ans = meta["objects"], meta["answer"]
        types[meta["question_type"]] += 1
        assert len(objs) <= cfg.max_shapes and len({o["cell"] for o in objs}) == len(objs)  # no overlap
        if meta["question_type"] == "count":
            shape = q.split("How many ")[1].split("s are")[0]
            assert sum(o["shape"] == shape for o in objs) == int(ans)
        elif meta["question_type"] == "colour":
            shape = q.split("the ")[1].rstrip("?")
            (target,) = [o for o in objs if o["shape"] == shape]  # unique, so the question is unambiguous
            assert target["colour"] == ans
        elif meta["question_type"] == "shape":
            colour = q.split("the ")[1].split(" object")[0]
            (target,) = [o for o in objs if o["colour"] == colour]
            assert target["shape"] == ans
        else:
            a, b = objs[0], objs[1]
            assert a["shape"] in q.split("the ")[1] and b["shape"] in q.split("the ")[2]
            axis = "x" if meta["question_type"] == "position" else "y"
            assert (a[axis] < b[axis]) == (ans in ("left", "above"))
    assert set(types) == {"colour", "shape", "count", "position", "vertical"}


def test_shapes_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown difficulty"):
        ShapesVQAConfig.preset("impossible")
    with pytest.raises(ValueError, match="position questions"):
        ShapesVQAConfig.preset("easy", question_types=("position",))


def test_resample_keeps_frequency_and_length():
    from modrwkv.data.audio_io import resample

    t = np.arange(22050) / 22050
    y = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 22050, 16000)
    assert y.dtype == np.float32 and y.shape == (16000,)
    assert np.argmax(np.abs(np.fft.rfft(y))) == 1000  # 1 s at 16 kHz: bin k is k Hz
    assert np.abs(y).max() == pytest.approx(1.0, abs=0.02)


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def _small_audio_config(**kw):
    from modrwkv.data.spoken_words import SpokenWordsConfig

    return SpokenWordsConfig(voices=("en-us",), speeds=(175,), pitches=(50,), **kw)


@needs_espeak
def test_spoken_words_deterministic_cached_and_balanced(tmp_path, monkeypatch):
    from modrwkv.data import espeak
    from modrwkv.data.spoken_words import DIGITS, generate_spoken_words

    cfg = _small_audio_config()
    a = list(generate_spoken_words(20, seed=5, config=cfg, cache_dir=tmp_path))
    assert len(list(tmp_path.glob("*.npy"))) == 10  # one clip per digit for this single voice/speed/pitch
    espeak._synthesize_cached.cache_clear()

    def no_subprocess(*args, **kwargs):
        raise AssertionError("espeak-ng called although every clip is cached")

    espeak.espeak_version()  # (lru-cached) the version is part of the cache key: read it before blocking subprocess
    monkeypatch.setattr(espeak.subprocess, "run", no_subprocess)
    b = list(generate_spoken_words(20, seed=5, config=cfg, cache_dir=tmp_path))
    for x, y in zip(a, b):
        assert np.array_equal(x["audio"], y["audio"]) and x["meta"] == y["meta"]
    s = a[0]
    assert s["modality"] == "audio" and s["audio"].dtype == np.float32 and s["audio"].ndim == 1
    assert 0.2 < len(s["audio"]) / 16000 < 3.0 and np.abs(s["audio"]).max() <= 1.0
    assert s["conversation"][0]["content"] == "<audio>\nTranscribe the audio."
    assert s["conversation"][1]["content"] == s["meta"]["transcript"]
    assert Counter(x["meta"]["transcript"] for x in a) == {d: 2 for d in DIGITS}


@needs_espeak
def test_spoken_words_sequences_join_several_words(tmp_path):
    from modrwkv.data.spoken_words import generate_spoken_words

    cfg = _small_audio_config(words=("yes", "no"), min_words=2, max_words=3)
    for s in generate_spoken_words(4, seed=0, config=cfg, cache_dir=tmp_path):
        words = s["meta"]["transcript"].split()
        assert 2 <= len(words) <= 3 and set(words) <= {"yes", "no"}


def test_missing_espeak_is_a_clear_error(monkeypatch, tmp_path):
    from modrwkv.data import espeak

    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    espeak._synthesize_cached.cache_clear()
    espeak.espeak_version.cache_clear()
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        espeak.synthesize("one", cache_dir=tmp_path)
    espeak.espeak_version.cache_clear()


@needs_espeak
def test_prepare_audio_dataset_round_trips_through_flac(tmp_path):
    from modrwkv.data.prepare import prepare_offline_dataset
    from modrwkv.data.reader import make_dataset
    from modrwkv.data.spoken_words import generate_spoken_words

    config = {"voices": ["en-us"], "speeds": [175], "pitches": [50]}
    ds = prepare_offline_dataset("audio", tmp_path / "audio", 4, 2, 2, seed=0, config=config, cache_dir=tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "audio" / "train").iterdir())[0].endswith(".tar")
    got = list(make_dataset(ds.splits["train"]))
    expected = list(generate_spoken_words(4, seed=0, config=_small_audio_config(), cache_dir=tmp_path / "c"))
    for a, b in zip(expected, got):
        assert a["meta"] == b["meta"] and a["audio"].shape == b["audio"].shape
        assert np.abs(a["audio"] - b["audio"]).max() <= 1.0 / 32768 + 1e-7  # 16-bit flac
