"""The offline generators behind one signature, as the modality registry (``modrwkv.modalities``) names them:

    generate(n, seed, split, config, cache_dir) -> iterator of schema samples

Each split gets its own reproducible stream. The generator modules are imported on call (PIL, espeak-ng and
statsmodels stay unloaded until a dataset is generated).
"""

from __future__ import annotations

from modrwkv.modalities import split_seed


def shapes_vqa(n: int, seed: int, split: str, config, cache_dir=None):
    """Shapes VQA images (``data/shapes_vqa.py``)."""
    from modrwkv.data.shapes_vqa import generate_shapes_vqa

    return generate_shapes_vqa(n, split_seed(seed, split), config)


def shapes_vqa_manifest(config) -> dict:
    """What a shapes-VQA dataset's manifest adds: its answer vocabulary and chance accuracy."""
    from modrwkv.data.shapes_vqa import answer_vocabulary, chance_accuracy

    return {"answer_vocabulary": answer_vocabulary(config), "chance_accuracy": chance_accuracy(config)}


def spoken_words(n: int, seed: int, split: str, config, cache_dir=None):
    """Spoken words synthesised with espeak-ng (``data/spoken_words.py``); ``cache_dir`` caches the clips."""
    from modrwkv.data.spoken_words import generate_spoken_words

    return generate_spoken_words(n, split_seed(seed, split), config, cache_dir=cache_dir)


def forecast_windows(n: int, seed: int, split: str, config, cache_dir=None):
    """Forecasting windows (``data/forecasting.py``): the splits are disjoint time ranges of one seed."""
    from modrwkv.data.forecasting import generate_forecast_windows

    return generate_forecast_windows(n, seed, split, config)
