"""Every numeric and path option of a composed config, checked in one pass before any work starts.

``preflight(cfg)`` is the first thing a training run does. A bad value gives one ``ConfigError`` whose message
names each offending key (the key the value was written under, when it reaches the checked key through an
interpolation such as ``data.batch_size: ${preset.batch_size}``), the value and the allowed range. Then the MLflow
store is made ready (created once, under a file lock, so that jobs starting together do not race).

The rules are tables (``COMMON``, ``MULTIMODAL``, ``LM``): a new option gets a line there. Weight files are checked
by the builders themselves (the encoder first), which already fail before any large work.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config_errors import ConfigError, exit_on_config_error, exit_with
from .store_check import can_create_in, check_tracking_uri, nearest_existing, sqlite_path

__all__ = ["ConfigError", "check_tracking_uri", "check_values", "exit_on_config_error", "exit_with", "preflight",
           "sqlite_path"]

_ABSENT = object()


# ---- value rules -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    """An int (``integer=True``) or a finite real number within ``[low, high]`` (``open_low``: ``> low``)."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False
    optional: bool = False  # null allowed

    def problem(self, value) -> str | None:
        if value is None:
            return None if self.optional else "is required"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "is not a number"
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            return "is not an integer"
        if not math.isfinite(value):
            return "is not finite"
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return "out of range"
        if self.high is not None and value > self.high:
            return "out of range"
        return None

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            bounds = f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            bounds = f"{'>' if self.open_low else '>='} {self.low:g}"
        elif self.high is not None:
            bounds = f"<= {self.high:g}"
        else:
            bounds = ""
        return " ".join(p for p in (kind, bounds, "or null" if self.optional else "") if p)


@dataclass(frozen=True)
class AnyOf:
    """One of several rules (e.g. a step count or a fraction of an epoch)."""

    rules: tuple

    def problem(self, value) -> str | None:
        problems = [r.problem(value) for r in self.rules]
        return None if any(p is None for p in problems) else problems[0]

    def allowed(self) -> str:
        return " or ".join(r.allowed() for r in self.rules)


@dataclass(frozen=True)
class Choice:
    """One of the listed values."""

    values: tuple

    def problem(self, value) -> str | None:
        return None if value in self.values else "is not allowed"

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


BOOL = Choice((True, False))


@dataclass(frozen=True)
class Devices:
    """A list of device indices (e.g. [0, 1])."""

    def problem(self, value) -> str | None:
        ok = isinstance(value, (list, tuple)) and value and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
        return None if ok else "is not a list of device indices"

    def allowed(self) -> str:
        return "a list of device indices"


@dataclass(frozen=True)
class Betas:
    """Adam's (beta1, beta2), each in [0, 1)."""

    def problem(self, value) -> str | None:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            return "is not a pair"
        ok = all(not isinstance(b, bool) and isinstance(b, (int, float)) and 0 <= b < 1 for b in value)
        return None if ok else "out of range"

    def allowed(self) -> str:
        return "two numbers in [0, 1), e.g. [0.9, 0.99]"


@dataclass(frozen=True)
class ExistingFile:
    """A file that exists (null allowed: the option is off)."""

    what: str

    def problem(self, value) -> str | None:
        if value is None:
            return None
        p = Path(str(value))
        if not p.exists():
            return "does not exist"
        return None if p.is_file() else "is not a file"

    def allowed(self) -> str:
        return f"null or an existing file ({self.what})"


@dataclass(frozen=True)
class WritableDir:
    """A folder that exists and can be written, or that can be created (its nearest existing parent is writable)."""

    what: str

    def problem(self, value) -> str | None:
        if value is None:
            return "is required"
        p = Path(str(value))
        if p.exists() and not p.is_dir():
            return "is a file, not a folder"
        base = nearest_existing(p.resolve())
        if not base.is_dir():
            return f"cannot be created ({base} is a file)"
        return None if can_create_in(base) else f"is not writable ({base} is read-only)"

    def allowed(self) -> str:
        return f"a writable folder ({self.what})"


# ---- the tables: key -> rule -------------------------------------------------------------------------------------
STEPS = Number(1, integer=True)
COUNT = Number(0, integer=True)
POSITIVE = Number(0, open_low=True)
FRACTION = Number(0, 1)
BATCHES = AnyOf((Number(0, integer=True, optional=True), FRACTION))  # Lightning: batches, a fraction, null: all

COMMON: dict[str, object] = {
    "seed": Number(0, 2**32 - 1, integer=True),
    "resume": ExistingFile("a Lightning .ckpt of an earlier run"),
    "test_after_training": BOOL,
    "guard.max_bad_steps": COUNT,
    "paths.root": WritableDir("the project root: mlflow.db, outputs/ and data/ live there"),
    "paths.data": WritableDir("datasets are generated and cached there"),
    "stage.lr": POSITIVE,
    "stage.weight_decay": Number(0),
    "stage.betas": Betas(),
    "stage.eps": POSITIVE,
    "stage.warmup_steps": COUNT,
    "stage.min_lr_ratio": FRACTION,
    "stage.init_from": ExistingFile("a Lightning .ckpt of an earlier stage"),
    "trainer.max_steps": STEPS,
    "trainer.val_check_interval": AnyOf((Number(1, integer=True, optional=True), Number(0, 1, open_low=True))),
    "trainer.limit_val_batches": BATCHES,
    "trainer.limit_test_batches": BATCHES,
    "trainer.limit_train_batches": BATCHES,
    "trainer.gradient_clip_val": Number(0, optional=True),
    "trainer.log_every_n_steps": STEPS,
    "trainer.num_sanity_val_steps": Number(-1, integer=True),
    "trainer.accumulate_grad_batches": STEPS,
    "trainer.num_nodes": STEPS,
    "trainer.devices": AnyOf((STEPS, Choice((-1, "auto")), Devices())),
    "trainer.fast_dev_run": AnyOf((BOOL, COUNT)),
    "callbacks.checkpoint.every_n_train_steps": Number(0, integer=True, optional=True),
    "callbacks.checkpoint.dirpath": WritableDir("checkpoints are written there"),
    "callbacks.checkpoint.save_top_k": Number(-1, integer=True),
    "logger.kind": Choice(("mlflow", "csv", "none")),
    "eval.generate": BOOL,
    "eval.max_batches": Number(0, integer=True, optional=True),
    "eval.max_new_tokens": Number(1, integer=True, optional=True),
}

MULTIMODAL: dict[str, object] = {
    "preset.batch_size": STEPS,
    "preset.eval_batch_size": STEPS,
    "data.batch_size": STEPS,
    "data.eval_batch_size": STEPS,
    "data.source": Choice(("offline", "shards")),
    "data.seed": Number(0, integer=True),
    "data.num_workers": COUNT,
    "data.max_tokens": Number(1, integer=True, optional=True),
    "data.shuffle_buffer": COUNT,
    "data.resampled": BOOL,
    "data.epoch_length": Number(1, integer=True, optional=True),
    "data.max_skips": Number(0, integer=True, optional=True),
    "data.max_skip_fraction": Number(0, 1, optional=True),
    "data.cache_dir": WritableDir("the audio clip cache"),
    "data.sizes.train": STEPS,
    "data.sizes.val": STEPS,
    "data.sizes.test": STEPS,
    "adapter.scale": STEPS,
    "adapter.kernel_size": Number(1, integer=True, optional=True),
    "adapter.stride": Number(1, integer=True, optional=True),
    "adapter.padding": Number(0, integer=True, optional=True),
}

LM: dict[str, object] = {
    "task.variant": Choice(("base", "g1")),
    "task.lr": POSITIVE,
    "task.seq_len": Number(2, integer=True),
    "task.batch_size": STEPS,
    "task.eval_batch_size": STEPS,
    "task.corpus.max_chars": STEPS,
    "task.corpus.val_fraction": Number(0, 1, open_low=True),
    "task.corpus.test_fraction": Number(0, 1, open_low=True),
}


# ---- the pass ----------------------------------------------------------------------------------------------------
_SIMPLE_INTERPOLATION = re.compile(r"\$\{(\.*[\w.]+)\}")


def origin_key(raw: dict, key: str) -> str:
    """The key a value is written under: follows plain ``${a.b}`` / ``${..b}`` interpolations met on ``key``'s path.

    ``raw``: the config as a container with interpolations unresolved. ``data.sizes.train`` with
    ``data.sizes: ${modality.sizes}`` and ``modality.sizes: ${preset.data_sizes}`` gives ``preset.data_sizes.train``.
    """
    for _ in range(32):  # interpolation chains are short; a cycle stops here
        parts, node = key.split("."), raw
        for i, part in enumerate(parts):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
            match = _SIMPLE_INTERPOLATION.fullmatch(node) if isinstance(node, str) else None
            if match is not None:
                ref = match.group(1)
                dots = len(ref) - len(ref.lstrip("."))  # relative: one dot is a sibling, two the parent's sibling
                target = ".".join(parts[:i + 1][:-dots] + [ref.lstrip(".")]) if dots else ref
                key = ".".join([target, *parts[i + 1:]])
                break
        else:
            return key
    return key


def _value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)


def _check_table(cfg: DictConfig, raw: dict, table: dict, problems: list[str], reported: set[str]) -> None:
    for key, rule in table.items():
        if origin_key(raw, key) in reported:  # e.g. data.batch_size after preset.batch_size, its source
            continue
        try:
            value = _value(cfg, key)
        except OmegaConfBaseException as e:
            problems.append(f"{origin_key(raw, key)}: {str(e).splitlines()[0]}")
            continue
        if value is _ABSENT:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        problem = rule.problem(value)
        if problem is not None:
            reported.add(origin_key(raw, key))
            problems.append(_describe(raw, key, value, f"{problem} (allowed: {rule.allowed()})"))


def _describe(raw: dict, key: str, value, text: str) -> str:
    source = origin_key(raw, key)
    used = "" if source == key else f" (used as {key})"
    return f"{source}={value!r}{used}: {text}"


def _check_data_root(cfg: DictConfig, raw: dict, problems: list[str]) -> None:
    root = Path(str(cfg.data.root))
    if cfg.data.get("source") == "shards":
        for split in ("train", "val"):
            if not any((root / split).glob("*.tar")):
                problems.append(_describe(raw, "data.root", str(root), f"no shards in {root / split}; convert a "
                                          "dataset there first (python -m modrwkv.data.convert_llava --help, ...) "
                                          "or use data=offline"))
                return
        return
    from ..data.prepare import make_config

    try:  # the generator's own checks (sizes, option names), without generating anything
        make_config(cfg.data.modality, OmegaConf.to_container(cfg.data.generator, resolve=True))
    except (ValueError, TypeError) as e:
        problems.append(f"modality.generator (used as data.generator): {e}")
    problem = WritableDir("").problem(root)
    if problem is not None and not (root / "manifest.json").is_file():  # a prepared dataset is only read
        problems.append(_describe(raw, "data.root", str(root), f"{problem} (allowed: a writable folder, where the "
                                  "offline dataset is generated, or one holding a prepared dataset)"))


def _check_lm(cfg: DictConfig, raw: dict, problems: list[str]) -> None:
    corpus = cfg.task.get("corpus", {})
    from ..data.text_corpus import SOURCES

    unknown = sorted(set(corpus.get("sources", [])) - set(SOURCES))
    if unknown:
        problems.append(f"task.corpus.sources names unknown sources {unknown}; allowed: {', '.join(SOURCES)}")
    if corpus and corpus.get("val_fraction", 0) + corpus.get("test_fraction", 0) >= 1:
        problems.append("task.corpus.val_fraction + task.corpus.test_fraction must be < 1 (the rest is training)")
    path = OmegaConf.select(cfg, "callbacks.save_backbone.path", default=None)
    if path is not None:
        problem = WritableDir("").problem(Path(str(path)).parent)
        if problem is not None:
            problems.append(_describe(raw, "callbacks.save_backbone.path", str(path),
                                      f"cannot be written, its folder {problem}"))


def _check_logger(cfg: DictConfig, problems: list[str]) -> None:
    if cfg.logger.get("kind") != "mlflow":
        return
    problem = check_tracking_uri(str(cfg.logger.tracking_uri))
    if problem is not None:
        problems.append(f"logger.tracking_uri={cfg.logger.tracking_uri}: {problem}; point it at a writable place "
                        "(logger.tracking_uri=sqlite:////some/writable/mlflow.db) or log to CSV files (logger=csv)")
    artifacts = cfg.logger.get("artifact_location")
    if artifacts and "://" not in str(artifacts):
        problem = WritableDir("").problem(artifacts)
        if problem is not None:
            problems.append(f"logger.artifact_location={artifacts}: {problem} (allowed: a writable folder)")


def check_values(cfg: DictConfig) -> None:
    """Raise one ``ConfigError`` listing every bad numeric or path option of ``cfg`` (writability is probed with a
    temporary file; nothing is left behind)."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    problems: list[str] = []
    lm = OmegaConf.select(cfg, "task.name", default="multimodal") == "lm"
    reported: set[str] = set()
    _check_table(cfg, raw, COMMON, problems, reported)
    _check_table(cfg, raw, LM if lm else MULTIMODAL, problems, reported)
    try:
        if lm:
            _check_lm(cfg, raw, problems)
        else:
            _check_data_root(cfg, raw, problems)
        _check_logger(cfg, problems)
    except OmegaConfBaseException as e:
        problems.append(str(e).splitlines()[0])
    if not problems:
        return
    if len(problems) == 1:
        raise ConfigError(f"bad config: {problems[0]}")
    raise ConfigError(f"bad config ({len(problems)} problems): " + " | ".join(problems))


def preflight(cfg: DictConfig) -> None:
    """Check ``cfg`` (``check_values``, then the choices of ``build.check_config``) and make the MLflow store ready.

    Raises ``ConfigError`` before anything is built or written (the store is created only once the values are good).
    """
    check_values(cfg)
    if OmegaConf.select(cfg, "task.name", default="multimodal") != "lm":
        from .build import check_config

        check_config(cfg)
    if cfg.logger.get("kind") == "mlflow":
        from .mlflow_runs import prepare_store

        prepare_store(cfg)
