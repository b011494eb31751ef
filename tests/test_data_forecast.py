"""Forecasting windows and the forecast text format."""

import numpy as np
import pytest

from modrwkv.data.forecast_format import context_stats, format_forecast, parse_forecast
from modrwkv.data.forecasting import ForecastConfig, _split_starts, generate_forecast_windows
from modrwkv.data.series_sources import statsmodels_series


def test_format_parse_round_trip():
    rng = np.random.default_rng(0)
    context = rng.normal(100, 7, 64)
    target = rng.normal(100, 7, 12)
    mean, std = context_stats(context)
    text = format_forecast(target, mean, std, decimals=2)
    assert len(text.split(" ")) == 12 and all(len(v.split(".")[1]) == 2 for v in text.split(" "))
    parsed = parse_forecast(text, 12, mean, std)
    assert parsed.n_missing == 0
    assert np.allclose(parsed.values, target, atol=0.005 * std + 1e-9)
    assert "-0.00" not in format_forecast([mean - 1e-9 * std], mean, std)


def test_parse_is_robust_to_garbage():
    mean, std = 10.0, 2.0
    p = parse_forecast("0.5, -1 then garbage 1e999", 5, mean, std)
    assert p.n_missing == 3  # 1e999 overflows to inf: missing, like the two never written
    assert p.values.tolist() == [11.0, 8.0, 10.0, 10.0, 10.0]
    p = parse_forecast("", 3, mean, std, fill="nan")
    assert p.n_missing == 3 and np.isnan(p.values).all()
    p = parse_forecast("1 2 3 4 5 6", 2, mean, std)
    assert p.n_missing == 0 and p.values.tolist() == [12.0, 14.0]
    p = parse_forecast("99999999", 1, mean, std, max_abs=100)
    assert p.values[0] == mean + 100 * std
    with pytest.raises(ValueError):
        parse_forecast("1", 1, 0, 1, fill="zero")


def test_constant_context_does_not_divide_by_zero():
    mean, std = context_stats(np.full(10, 5.0))
    assert std > 0
    assert format_forecast([5.0, 5.0], mean, std) == "0.00 0.00"


def test_statsmodels_series_load_offline():
    series = statsmodels_series()
    for name in ("sunspots/SUNACTIVITY", "co2/co2", "elnino/sst", "nile/volume", "macrodata/realgdp"):
        assert name in series and np.isfinite(series[name]).all() and len(series[name]) >= 100


def test_windows_deterministic_and_consistent():
    cfg = ForecastConfig(context_len=32, horizon=6)
    a = list(generate_forecast_windows(40, seed=1, split="train", config=cfg))
    b = list(generate_forecast_windows(40, seed=1, split="train", config=cfg))
    assert all(np.array_equal(x["series"], y["series"]) and x["meta"] == y["meta"] for x, y in zip(a, b))
    sources = {s["meta"]["source"].split("/")[0] for s in a}
    assert sources == {"statsmodels", "synthetic"}
    for s in a:
        assert s["series"].shape == (32,) and s["series"].dtype == np.float32 and len(s["meta"]["target"]) == 6
        mean, std = s["meta"]["context_mean"], s["meta"]["context_std"]
        parsed = parse_forecast(s["conversation"][1]["content"], 6, mean, std)
        assert np.allclose(parsed.values, s["meta"]["target"], atol=0.006 * std)
        if s["meta"]["source"].startswith("statsmodels/"):
            full = statsmodels_series()[s["meta"]["source"].split("/", 1)[1]]
            start = s["meta"]["start"]
            assert np.allclose(s["series"], full[start:start + 32].astype(np.float32))
            assert np.allclose(s["meta"]["target"], full[start + 32:start + 38].astype(np.float32))


def test_split_regions_do_not_share_targets():
    cfg = ForecastConfig(context_len=20, horizon=5)
    n = 300
    targets = {}
    for split in ("train", "val", "test"):
        starts = _split_starts(n, split, cfg)
        targets[split] = {t for s in starts for t in range(s + 20, s + 25)}
        assert len(starts) > 0
    assert not targets["train"] & targets["val"] and not targets["val"] & targets["test"]
    assert not targets["train"] & targets["test"]
    assert max(targets["train"]) < min(targets["val"]) and max(targets["val"]) < min(targets["test"])


def test_too_long_windows_are_a_clear_error():
    with pytest.raises(ValueError, match="long enough"):
        next(generate_forecast_windows(1, config=ForecastConfig(context_len=5000, horizon=10)))
    synth = next(generate_forecast_windows(1, config=ForecastConfig(context_len=5000, horizon=10, real_fraction=0)))
    assert synth["series"].shape == (5000,)
