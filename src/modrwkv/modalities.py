"""The modality registry: one ``ModalitySpec`` per modality holds everything that differs between them.

    spec = get_modality("image")         # also by an alias: get_modality("vision") is the same spec
    spec.name                            # the one canonical name: a sample's "modality" and the key of its data
    spec.tag                             # where the modality goes in the user text, e.g. "<image>"
    spec.codec()                         # how its data is checked, written to and read from shards (data/codecs.py)
    spec.offline                         # the project's own generator (data/prepare.py)
    spec.metrics() / spec.score(...)     # validation metrics and how generated answers update them
    spec.max_new_tokens, spec.main_metric, spec.report_metrics

Adding a modality is one entry here and one file in conf/modality/ (plus its encoders). The callables import their
modules only when called, so importing this registry loads nothing heavy. ``text`` is the language-model task's
pseudo-modality: no data member, no tag, loss-only evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val", "test")


def split_seed(seed: int, split: str) -> int:
    """A distinct, reproducible seed per split of a generator run."""
    return seed * 1000 + SPLITS.index(split)


@dataclass(frozen=True)
class OfflineData:
    """The project's own generator of a modality: its config class and how one split is generated.

    ``generate(n, seed, split, config, cache_dir)`` yields schema samples. A mapping config may name a preset under
    ``preset_key`` (``config_class.preset(name, **rest)``, default ``default_preset``); ``manifest(config)`` adds
    fields to the dataset's manifest.
    """

    config_class: Callable[[], type]
    generate: Callable[..., Any]
    preset_key: str | None = None
    default_preset: str | None = None
    manifest: Callable[[Any], dict] | None = None


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: its names, chat tag, data codec, generator, metrics, scoring and evaluation defaults."""

    name: str
    aliases: tuple[str, ...] = ()  # other names accepted for it (config choices, older data files)
    encoder_kind: str = ""  # what its encoders are called in messages ("vision", "time series")
    tag: str | None = None  # the placeholder tag in user text; None: the modality has no data member
    codec: Callable[[], Any] | None = None  # -> the data codec (data/codecs.py)
    offline: OfflineData | None = None
    metrics: Callable[[], dict] | None = None  # -> {name: torchmetrics.Metric}; None: loss-only evaluation
    scorer: Callable[..., dict] | None = None  # (metrics, spec, samples, predictions) -> extra counts
    reference: str | None = None  # the meta key holding a sample's reference answer
    max_new_tokens: int | None = None  # the generation budget of one answer
    main_metric: str = "val/loss"  # what a sweep of this modality is judged by
    report_metrics: tuple[str, ...] = ("val/loss", "test/loss")  # the columns of a sweep's table, in order

    @property
    def generative(self) -> bool:
        """Whether validation generates answers and scores them (else only the loss is evaluated)."""
        return self.metrics is not None

    def score(self, metrics, samples: list[dict], predictions: list[str]) -> dict[str, float]:
        """Feed one batch of generated ``predictions`` to ``metrics``; returns extra counts to log."""
        return self.scorer(metrics, self, samples, predictions)


# -- the callables of the entries (imports happen on call) -----------------------------------------------------------
def _codec(name: str) -> Callable[[], Any]:
    def load():
        from modrwkv.data import codecs

        return getattr(codecs, name)

    return load


def _shapes_config():
    from modrwkv.data.shapes_vqa import ShapesVQAConfig

    return ShapesVQAConfig


def _shapes(n, seed, split, config, cache_dir=None):
    from modrwkv.data.shapes_vqa import generate_shapes_vqa

    return generate_shapes_vqa(n, split_seed(seed, split), config)


def _shapes_manifest(config) -> dict:
    from modrwkv.data.shapes_vqa import answer_vocabulary, chance_accuracy

    return {"answer_vocabulary": answer_vocabulary(config), "chance_accuracy": chance_accuracy(config)}


def _spoken_config():
    from modrwkv.data.spoken_words import SpokenWordsConfig

    return SpokenWordsConfig


def _spoken(n, seed, split, config, cache_dir=None):
    from modrwkv.data.spoken_words import generate_spoken_words

    return generate_spoken_words(n, split_seed(seed, split), config, cache_dir=cache_dir)


def _forecast_config():
    from modrwkv.data.forecasting import ForecastConfig

    return ForecastConfig


def _forecast(n, seed, split, config, cache_dir=None):
    from modrwkv.data.forecasting import generate_forecast_windows

    return generate_forecast_windows(n, seed, split, config)  # splits are disjoint time ranges of one seed


def _accuracy() -> dict:
    from modrwkv.evaluation.metrics import AnswerAccuracy

    return {"accuracy": AnswerAccuracy()}


def _wer_cer() -> dict:
    from modrwkv.evaluation.metrics import NormalizedCER, NormalizedWER

    return {"wer": NormalizedWER(), "cer": NormalizedCER()}


def _mse_mae() -> dict:
    import torchmetrics

    return {"mse": torchmetrics.MeanSquaredError(), "mae": torchmetrics.MeanAbsoluteError()}


def _score_text(*args) -> dict:
    from modrwkv.evaluation.scoring import score_text

    return score_text(*args)


def _score_forecast(*args) -> dict:
    from modrwkv.evaluation.scoring import score_forecast

    return score_forecast(*args)


MODALITIES: dict[str, ModalitySpec] = {s.name: s for s in (
    ModalitySpec("image", aliases=("vision",), encoder_kind="vision", tag="<image>", codec=_codec("IMAGE"),
                 offline=OfflineData(_shapes_config, _shapes, "difficulty", "easy", _shapes_manifest),
                 metrics=_accuracy, scorer=_score_text, reference="answer", max_new_tokens=8,
                 main_metric="val/accuracy", report_metrics=("val/accuracy", "test/accuracy", "val/loss", "test/loss")),
    ModalitySpec("audio", encoder_kind="audio", tag="<audio>", codec=_codec("AUDIO"),
                 offline=OfflineData(_spoken_config, _spoken, "preset", "digits"),
                 metrics=_wer_cer, scorer=_score_text, reference="transcript", max_new_tokens=48,
                 main_metric="val/wer", report_metrics=("val/wer", "val/cer", "test/wer", "test/cer", "val/loss")),
    ModalitySpec("series", aliases=("timeseries",), encoder_kind="time series", tag="<series>",
                 codec=_codec("SERIES"), offline=OfflineData(_forecast_config, _forecast),
                 metrics=_mse_mae, scorer=_score_forecast, reference="target", max_new_tokens=96,
                 main_metric="val/mse", report_metrics=("val/mse", "val/mae", "test/mse", "test/mae", "val/loss")),
    ModalitySpec("text", encoder_kind="text"),
)}
_BY_NAME = {n: s for s in MODALITIES.values() for n in (s.name, *s.aliases)}


def get_modality(name: str) -> ModalitySpec:
    """The spec of modality ``name`` (its canonical name or an alias); a clear error for an unknown one."""
    spec = _BY_NAME.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown modality {name!r}; expected one of {sorted(data_modalities())}")
    return spec


def find_modality(name) -> ModalitySpec | None:
    """The spec of ``name`` (canonical or alias), or None when no modality is called that."""
    return _BY_NAME.get(name) if isinstance(name, str) else None


def canonical_name(name: str) -> str:
    """The canonical name of a modality given any of its names."""
    return get_modality(name).name


def data_modalities() -> tuple[str, ...]:
    """The modalities whose samples carry data (an image, audio, a series): the ones with a chat tag."""
    return tuple(n for n, s in MODALITIES.items() if s.tag is not None)


def modality_tags() -> tuple[str, ...]:
    """Every modality's chat tag."""
    return tuple(s.tag for s in MODALITIES.values() if s.tag is not None)
