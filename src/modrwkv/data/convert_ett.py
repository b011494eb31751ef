"""ETT / GIFT-Eval style CSV -> forecasting window shards (per-column univariate windows).

The CSV has a date column and numeric columns (ETTh1: ``date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT``). Each numeric
column gives windows of ``context_len`` + ``horizon`` points every ``stride`` points, split by time as in the
standard benchmarks (Informer/Autoformer ``data_loader.py``):

- ``ett_hour`` (ETTh1/2): train = first 12 months (8640 rows), val = next 4, test = next 4;
- ``ett_minute`` (ETTm1/2): the same months at 15-minute resolution (x4 rows);
- ``ratio`` (other files): train 70%, test the last 20%, val in between;

a val/test window's context may reach back ``context_len`` rows into the previous split (as in those loaders);
targets never cross a split border. ``meta`` carries the train split's per-column mean/std (``scaler_mean``,
``scaler_std``) so that errors can be reported on the benchmarks' standardised scale.

    python -m modrwkv.data.convert_ett --csv ETTh1.csv --out shards/etth1 --context-len 512 --horizon 96
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from modrwkv.data.atomic import atomic_dir
from modrwkv.data.convert_common import ConvertReport
from modrwkv.data.forecasting import ForecastConfig, make_forecast_sample
from modrwkv.data.shards import encode_sample, write_shards

SCHEMES = ("auto", "ett_hour", "ett_minute", "ratio")
SPLITS = ("train", "val", "test")


def split_borders(n_rows: int, context_len: int, scheme: str) -> dict[str, tuple[int, int]]:
    """Row ranges ``[begin, end)`` per split; windows of a split lie inside its range (contexts may start early)."""
    if scheme in ("ett_hour", "ett_minute"):
        per_month = 30 * 24 * (4 if scheme == "ett_minute" else 1)
        ends = [12 * per_month, 16 * per_month, 20 * per_month]
        if n_rows < ends[2]:
            raise ValueError(f"{scheme} split needs at least {ends[2]} rows, the file has {n_rows}; use scheme='ratio'")
    elif scheme == "ratio":
        n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
        ends = [n_train, n_rows - n_test, n_rows]
    else:
        raise ValueError(f"unknown split scheme {scheme!r}; expected one of {SCHEMES}")
    begins = [0, ends[0] - context_len, ends[1] - context_len]
    return {s: (max(0, b), e) for s, b, e in zip(SPLITS, begins, ends)}


def read_series_csv(csv_path: str | os.PathLike, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Numeric columns of a date + values CSV (the date and other non-numeric columns dropped; gaps interpolated)."""
    import pandas as pd

    frame = pd.read_csv(csv_path)
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{csv_path}: no columns {missing}; it has {list(frame.columns)}")
        frame = frame[columns]
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    out = {}
    for col in numeric.columns:
        if str(col).lower() == "date" or numeric[col].isna().all():
            continue
        out[str(col)] = numeric[col].interpolate(limit_direction="both").to_numpy(dtype=np.float64)
    if not out:
        raise ValueError(f"{csv_path}: no numeric columns")
    return out


def _records(name, series, borders, cfg, stride, split, report):
    for col, values in series.items():
        b_train, e_train = borders["train"]
        scaler_mean = float(values[b_train:e_train].mean())
        scaler_std = float(values[b_train:e_train].std()) or 1.0
        begin, end = borders[split]
        for s in range(begin, end - cfg.context_len - cfg.horizon + 1, stride):
            c_end = s + cfg.context_len
            meta = {"source": f"csv/{name}", "column": col, "start": s, "split": split,
                    "scaler_mean": scaler_mean, "scaler_std": scaler_std}
            report.written[split] += 1
            sample = make_forecast_sample(f"{name}-{col}-{split}-{s:08d}", values[s:c_end],
                                          values[c_end:c_end + cfg.horizon], cfg, meta)
            yield encode_sample(sample)


def convert_ett(csv_path: str | os.PathLike, out_dir: str | os.PathLike, context_len: int = 96, horizon: int = 24,
                stride: int = 1, scheme: str = "auto", columns: list[str] | None = None, decimals: int = 2,
                maxcount: int = 2000, name: str | None = None) -> ConvertReport:
    """Convert an ETT/GIFT-Eval style CSV into ``out_dir/{train,val,test}/<name>-NNNNNN.tar`` window shards.

    ``scheme``: ``auto`` picks ``ett_hour`` for ETTh*, ``ett_minute`` for ETTm*, else ``ratio``. ``stride``:
    rows between consecutive window starts. The answer text is the target normalised by the context (as the
    offline generator's), with ``decimals`` decimals. Returns a ``ConvertReport`` with counts per split.
    """
    csv_path = Path(csv_path)
    name = name or csv_path.stem
    if scheme == "auto":
        upper = name.upper()
        scheme = "ett_hour" if upper.startswith("ETTH") else "ett_minute" if upper.startswith("ETTM") else "ratio"
    if stride < 1 or context_len < 2 or horizon < 1:
        raise ValueError("need stride >= 1, context_len >= 2, horizon >= 1")
    series = read_series_csv(csv_path, columns)
    n_rows = len(next(iter(series.values())))
    borders = split_borders(n_rows, context_len, scheme)
    cfg = ForecastConfig(context_len=context_len, horizon=horizon, decimals=decimals)
    report = ConvertReport()
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            shards = write_shards(_records(name, series, borders, cfg, stride, split, report), tmp / split,
                                  prefix=name, maxcount=maxcount)
            report.shards[split] = [str(Path(out_dir) / split / Path(p).name) for p in shards]
            if report.written[split] == 0:
                rows = borders[split]
                report.skip("empty_split", f"{split}: no window of {context_len}+{horizon} fits in rows {rows}")
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Convert an ETT/GIFT-Eval style CSV to forecasting window shards.")
    parser.add_argument("--csv", required=True, help="CSV with a date column and numeric columns")
    parser.add_argument("--out", required=True, help="output folder (train/ val/ test/ shards; replaced atomically)")
    parser.add_argument("--context-len", type=int, default=96)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--scheme", choices=SCHEMES, default="auto")
    parser.add_argument("--columns", nargs="*", default=None, help="numeric columns to use (default: all)")
    parser.add_argument("--decimals", type=int, default=2)
    parser.add_argument("--maxcount", type=int, default=2000, help="samples per shard")
    args = parser.parse_args(argv)
    print(convert_ett(args.csv, args.out, args.context_len, args.horizon, args.stride, args.scheme, args.columns,
                      args.decimals, args.maxcount))


if __name__ == "__main__":
    main()
