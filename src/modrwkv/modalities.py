"""The modality registry: one ``ModalitySpec`` per modality holds everything that differs between them.

    spec = get_modality("image")         # also by an alias: get_modality("vision") is the same spec
    spec.name                            # the one canonical name: a sample's "modality" and the key of its data
    spec.tag                             # where the modality goes in the user text, e.g. "<image>"
    spec.codec()                         # how its data is checked, written to and read from shards (data/codecs.py)
    spec.offline                         # the project's own generator (data/prepare.py)
    spec.metrics() / spec.score(...)     # validation metrics and how generated answers update them
    spec.max_new_tokens, spec.main_metric, spec.report_metrics

Adding a modality is one entry here and one file in conf/modality/ (plus its encoders). The entries name what
they use by ``Ref("module:attr")``, imported only when used: importing this registry loads nothing heavy, and it
imports none of the modules that import it. ``text`` is the language-model task's pseudo-modality: no data member,
no tag, loss-only evaluation.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Ref:
    """A module attribute named ``"package.module:attr"``, imported when used: the registry imports none of the
    modules it names (they import it), so there is no import cycle and importing it loads nothing heavy."""

    path: str

    def get(self) -> Any:
        """The attribute itself (a class, a codec object, a function)."""
        module, _, attr = self.path.partition(":")
        return getattr(importlib.import_module(module), attr)

    def __call__(self, *args, **kwargs) -> Any:
        """Call the attribute."""
        return self.get()(*args, **kwargs)


def split_seed(seed: int, split: str) -> int:
    """A distinct, reproducible seed per split of a generator run."""
    return seed * 1000 + SPLITS.index(split)


@dataclass(frozen=True)
class OfflineData:
    """The project's own generator of a modality: its config class and how one split is generated.

    ``config_class.get()`` is the generator's config dataclass; ``generate(n, seed, split, config, cache_dir)``
    yields schema samples (``data/generators.py``). A mapping config may name a preset under ``preset_key``
    (``config_class.preset(name, **rest)``, default ``default_preset``); ``manifest(config)`` adds fields to the
    dataset's manifest.
    """

    config_class: Ref
    generate: Ref
    preset_key: str | None = None
    default_preset: str | None = None
    manifest: Ref | None = None


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: its names, chat tag, data codec, generator, metrics, scoring and evaluation defaults."""

    name: str
    aliases: tuple[str, ...] = ()  # other names accepted for it (config choices, older data files)
    encoder_kind: str = ""  # what its encoders are called in messages ("vision", "time series")
    tag: str | None = None  # the placeholder tag in user text; None: the modality has no data member
    codec: Ref | None = None  # () -> the data codec (data/codecs.py)
    offline: OfflineData | None = None
    metrics: Ref | None = None  # () -> {name: torchmetrics.Metric}; None: loss-only evaluation
    scorer: Ref | None = None  # (metrics, spec, samples, predictions) -> extra counts
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


_CODECS, _GEN, _METRICS, _SCORING = ("modrwkv.data.codecs", "modrwkv.data.generators", "modrwkv.evaluation.metrics",
                                     "modrwkv.evaluation.scoring")
MODALITIES: dict[str, ModalitySpec] = {s.name: s for s in (
    ModalitySpec("image", aliases=("vision",), encoder_kind="vision", tag="<image>",
                 codec=Ref(f"{_CODECS}:image_codec"),
                 offline=OfflineData(Ref("modrwkv.data.shapes_vqa:ShapesVQAConfig"), Ref(f"{_GEN}:shapes_vqa"),
                                     "difficulty", "easy", Ref(f"{_GEN}:shapes_vqa_manifest")),
                 metrics=Ref(f"{_METRICS}:accuracy_metrics"), scorer=Ref(f"{_SCORING}:score_text"),
                 reference="answer", max_new_tokens=8, main_metric="val/accuracy",
                 report_metrics=("val/accuracy", "test/accuracy", "val/loss", "test/loss")),
    ModalitySpec("audio", encoder_kind="audio", tag="<audio>", codec=Ref(f"{_CODECS}:audio_codec"),
                 offline=OfflineData(Ref("modrwkv.data.spoken_words:SpokenWordsConfig"), Ref(f"{_GEN}:spoken_words"),
                                     "preset", "digits"),
                 metrics=Ref(f"{_METRICS}:transcript_metrics"), scorer=Ref(f"{_SCORING}:score_text"),
                 reference="transcript", max_new_tokens=48, main_metric="val/wer",
                 report_metrics=("val/wer", "val/cer", "test/wer", "test/cer", "val/loss")),
    ModalitySpec("series", aliases=("timeseries",), encoder_kind="time series", tag="<series>",
                 codec=Ref(f"{_CODECS}:series_codec"),
                 offline=OfflineData(Ref("modrwkv.data.forecasting:ForecastConfig"), Ref(f"{_GEN}:forecast_windows")),
                 metrics=Ref(f"{_METRICS}:forecast_metrics"), scorer=Ref(f"{_SCORING}:score_forecast"),
                 reference="target", max_new_tokens=96, main_metric="val/mse",
                 report_metrics=("val/mse", "val/mae", "test/mse", "test/mae", "val/loss")),
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
