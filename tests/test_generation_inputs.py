"""Bad generation inputs fail at once with a one-line message that names what to change (no raw torch errors)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from .test_generate import _model, _sample


@pytest.fixture(scope="module")
def series_model():
    return _model("tiny-wavenet", "mlp")


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_p=0.0), "top_p must be a number in"),
    (dict(top_p=1.5), "top_p must be a number in"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(temperature=-1.0), "temperature must be a finite number"),
    (dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be an integer >= 0"),
    (dict(seed="x"), "seed must be an integer"),
])
def test_bad_decoding_options(series_model, kwargs, match):
    sample = _sample("series")
    for fast in (False, True):
        with pytest.raises(ValueError, match=match):
            series_model.generate(sample, fast=fast, **kwargs)
    prefix = series_model.encode_prefix(sample)
    with pytest.raises(ValueError, match=match):
        series_model.answer(prefix, "What?", **kwargs)


def test_bad_samples_prompts_and_questions(series_model):
    sample = _sample("series")
    with pytest.raises(ValueError, match="non-empty list of sample dicts"):
        series_model.generate_batch([])
    with pytest.raises(ValueError, match="prompt must be a string"):
        series_model.generate(sample, prompt=123)
    with pytest.raises(ValueError, match="2 samples but 1 prompts"):
        series_model.generate_batch([sample, sample], ["a"])
    with pytest.raises(ValueError, match="sample 0 must be a dict with 'modality'"):
        series_model.generate_batch([{"series": np.zeros(8)}])
    with pytest.raises(ValueError, match="no 'conversation'"):
        series_model.generate({"modality": "series", "series": np.ones(40, dtype=np.float32)})
    with pytest.raises(ValueError, match="generate takes one sample dict"):
        series_model.generate([sample])
    prefix = series_model.encode_prefix(sample)
    with pytest.raises(ValueError, match="needs the question"):
        series_model.generate(prefix)
    with pytest.raises(ValueError, match="questions must be a string or a non-empty list"):
        series_model.answer(prefix, [])
    with pytest.raises(ValueError, match="questions must be"):
        series_model.answer(prefix, [1, 2])
    with pytest.raises(ValueError, match="needs a PrefixState"):
        series_model.answer(sample, "What?")
    assert series_model.generate(sample, max_new_tokens=0) == ""


def test_empty_and_non_finite_modality_data(series_model):
    bad = _sample("series")
    bad["series"] = bad["series"].copy()
    bad["series"][3] = np.nan
    with pytest.raises(ValueError, match="sample 0: the series holds NaN"):
        series_model.generate(bad)
    bad["series"] = np.zeros(0, dtype=np.float32)
    with pytest.raises(ValueError, match="sample 0: the series is empty"):
        series_model.generate(bad)
    images = _model("tiny-clip", "conv")
    img = _sample("image")
    img["image"] = Image.new("RGB", (0, 0))
    with pytest.raises(ValueError, match=r"sample 0: the image is empty \(0x0 pixels\)"):
        images.generate(img)
    pixels = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    pixels[5, 5] = np.nan
    img["image"] = Image.fromarray(pixels, mode="F")
    with pytest.raises(ValueError, match="sample 1: the image holds NaN"):
        images.generate_batch([_sample("image"), img])
