"""Forecasts as text: the assistant writes the target normalised by the CONTEXT window's mean and std.

Normalising by the context keeps numbers in a small range whatever the series' scale, so a text model can predict
them with a handful of tokens; the evaluation maps them back to the raw scale with the same mean/std.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
MIN_STD = 1e-6  # a constant context has std 0; dividing by it would blow up, so a floor of this (relative) size


def context_stats(context: np.ndarray) -> tuple[float, float]:
    """Mean and std (floored, so never 0) used to normalise a forecast of this context."""
    context = np.asarray(context, dtype=np.float64)
    mean = float(np.mean(context))
    std = float(np.std(context))
    floor = MIN_STD * max(1.0, abs(mean))
    return mean, max(std, floor)


def format_forecast(values, mean: float, std: float, decimals: int = 2, sep: str = " ") -> str:
    """Write raw-scale ``values`` as normalised numbers with fixed ``decimals``, e.g. ``"0.12 -1.03 0.40"``."""
    z = np.round((np.asarray(values, dtype=np.float64) - mean) / std, decimals)
    z[z == 0] = 0.0  # turns -0.0 into 0.0, so "-0.00" is never written
    return sep.join(f"{v:.{decimals}f}" for v in z)


class ParsedForecast(NamedTuple):
    """``values``: raw-scale forecast of length ``horizon``; ``n_missing``: how many were absent or unreadable."""

    values: np.ndarray
    n_missing: int


def parse_forecast(text: str, horizon: int, mean: float, std: float, fill: str = "mean",
                   max_abs: float = 1e3) -> ParsedForecast:
    """Read the first ``horizon`` numbers of generated ``text`` back to the raw scale; never raises on garbage.

    Missing or non-finite values (text too short, "nan", "1e999") are filled with the context mean (``fill="mean"``,
    i.e. a normalised 0) or NaN (``fill="nan"``) and counted in ``n_missing``. Normalised values are clipped to
    +-``max_abs`` so that one absurd number cannot dominate an MSE average.
    """
    if fill not in ("mean", "nan"):
        raise ValueError(f"fill must be 'mean' or 'nan', got {fill!r}")
    z = np.full(horizon, np.nan)
    found = []
    for match in _NUMBER.finditer(text or ""):
        if len(found) == horizon:
            break
        try:
            found.append(float(match.group()))
        except ValueError:  # pragma: no cover - the regex only matches float syntax
            found.append(float("nan"))
    z[: len(found)] = found
    missing = ~np.isfinite(z)
    z = np.clip(z, -max_abs, max_abs)
    z[missing] = 0.0 if fill == "mean" else np.nan
    return ParsedForecast(values=z * std + mean, n_missing=int(missing.sum()))
