"""Forecasting errors on the benchmarks' scale: values standardised with the training split's per-channel mean and
standard deviation (the Informer/Autoformer protocol), averaged over every predicted point."""

from __future__ import annotations

import numpy as np


def scaled_errors(predictions: list[np.ndarray], targets: list[np.ndarray], stds: list[float]) -> dict[str, float]:
    """MSE and MAE over all windows' points, each window on its channel's train scale: (x - m) / s - (y - m) / s
    = (x - y) / s, so only the train std ``stds[i]`` of window i's channel matters."""
    if not targets:
        raise ValueError("scaled_errors needs at least one window")
    errs = [(np.asarray(p, np.float64) - np.asarray(t, np.float64)) / s for p, t, s in zip(predictions, targets, stds)]
    flat = np.concatenate(errs)  # (sum of horizons,)
    return {"mse": float(np.mean(flat ** 2)), "mae": float(np.mean(np.abs(flat)))}
