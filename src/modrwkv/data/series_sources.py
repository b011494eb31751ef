"""Univariate series for the forecasting generator: real ones shipped inside statsmodels, and synthetic ones.

All statsmodels datasets used here are files inside the installed package, so they load offline.
"""

from __future__ import annotations

import functools

import numpy as np

SYNTHETIC_KINDS = ("sine", "random_walk", "seasonal", "ar1")


def _clean(values) -> np.ndarray:
    """float64 array with NaNs linearly interpolated (co2 has gaps); all-NaN gives an empty array."""
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros(0)
    if not ok.all():
        idx = np.arange(x.size)
        x = np.interp(idx, idx[ok], x[ok])
    return x


@functools.lru_cache(maxsize=1)
def statsmodels_series() -> dict[str, np.ndarray]:
    """Real series from statsmodels, ``{"<dataset>/<column>": float64 array}``, grouped by dataset name prefix."""
    from statsmodels import datasets as smd

    out: dict[str, np.ndarray] = {}
    out["sunspots/SUNACTIVITY"] = _clean(smd.sunspots.load_pandas().data["SUNACTIVITY"])
    out["co2/co2"] = _clean(smd.co2.load_pandas().data["co2"])
    elnino = smd.elnino.load_pandas().data.drop(columns=["YEAR"])
    out["elnino/sst"] = _clean(elnino.to_numpy().reshape(-1))  # rows are years of 12 months: flatten to monthly
    out["nile/volume"] = _clean(smd.nile.load_pandas().data["volume"])
    macro = smd.macrodata.load_pandas().data
    for col in ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "tbilrate", "unemp", "pop",
                "infl", "realint"):
        out[f"macrodata/{col}"] = _clean(macro[col])
    infl = smd.interest_inflation.load_pandas().data
    for col in ("Dp", "R"):
        out[f"interest_inflation/{col}"] = _clean(infl[col])
    return {k: v for k, v in out.items() if v.size > 0}


def synthetic_series(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """One random series of ``length`` points: ``sine`` (1-2 sines + trend + noise), ``random_walk``,
    ``seasonal`` (a repeated random pattern + trend + noise) or ``ar1``; random offset and scale."""
    t = np.arange(length, dtype=np.float64)
    if kind == "sine":
        x = np.zeros(length)
        for _ in range(rng.integers(1, 3)):
            period = rng.uniform(6, 48)
            x += rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        x += rng.uniform(-0.03, 0.03) * t + rng.normal(0, rng.uniform(0.02, 0.3), length)
    elif kind == "random_walk":
        x = np.cumsum(rng.normal(rng.uniform(-0.1, 0.1), 1.0, length))
    elif kind == "seasonal":
        period = int(rng.integers(4, 25))
        pattern = rng.normal(0, 1, period)
        x = pattern[np.arange(length) % period] + rng.uniform(-0.05, 0.05) * t + rng.normal(0, 0.1, length)
    elif kind == "ar1":
        phi, x = rng.uniform(0.5, 0.98), np.zeros(length)
        eps = rng.normal(0, 1, length)
        for i in range(1, length):
            x[i] = phi * x[i - 1] + eps[i]
    else:
        raise ValueError(f"unknown synthetic kind {kind!r}; expected one of {SYNTHETIC_KINDS}")
    return x * rng.uniform(0.5, 20) + rng.uniform(-50, 50)
