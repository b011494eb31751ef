"""Print the end-to-end results found in a folder (the JSON files of the benches) and issue 7's acceptance verdicts.

    python bench/e2e_summary.py $OUT

Acceptance (issue 7): training, ModRWKV-1.5B tokens/s >= the Transformer's at context 2048 and >= 2x at 16384;
decode, batch 1, 1.5B: per-token latency flat from 1k to 64k (max/min <= 1.10) and <= 1.6x the weight-read floor.
Each is judged per variant (eager, compiled) and for the best variant of each model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import common


def load(folder: Path, name: str) -> dict | None:
    path = folder / name
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def train_verdicts(results: list[dict]) -> list[str]:
    """Per variant and for the best of each model, the two training criteria at size 1.5b."""
    rows = [r for res in results for r in res["rows"] if r.get("size") == "1.5b" and "tokens_per_s" in r]
    out = []

    def judge(label, pick):
        for ctx, need in ((2048, 1.0), (16384, 2.0)):
            rw, tf = pick("rwkv", ctx), pick("transformer", ctx)
            if rw and tf:
                ratio = rw["tokens_per_s"] / tf["tokens_per_s"]
                out.append(f"train {label:8s} ctx {ctx:5d}: RWKV/Transformer tokens/s = {ratio:.2f} "
                           f"(need >= {need:.0f}): {'MET' if ratio >= need else 'MISSED'}")

    for compiled in (False, True):
        judge("compile" if compiled else "eager", lambda m, c, compiled=compiled: next(
            (r for r in rows if r["model"] == m and r["ctx"] == c and r.get("compile") == compiled), None))
    judge("best", lambda m, c: max((r for r in rows if r["model"] == m and r["ctx"] == c),
                                   key=lambda r: r["tokens_per_s"], default=None))
    return out


def decode_verdicts(res: dict, label: str) -> list[str]:
    main_fused = not res["args"].get("no_fused", False)  # the main variant; --compare-plain rows are extra
    rows = [r for r in res["rows"] if r["model"] == "rwkv" and "decode_ms" in r and r.get("fused", True) == main_fused]
    if not rows:
        return []
    lat = [r["decode_ms"] for r in rows]
    spread = max(lat) / min(lat)
    out = [f"decode {label:8s} RWKV ctx {rows[0]['ctx']}..{rows[-1]['ctx']}: max/min latency {spread:.3f} "
           f"(need <= 1.10): {'MET' if spread <= 1.10 else 'MISSED'}"]
    if rows[0].get("floor_ms"):
        worst = max(r["decode_ms"] / r["floor_ms"] for r in rows)
        out.append(f"decode {label:8s} RWKV worst latency / weight-read floor {worst:.2f} (floor "
                   f"{rows[0]['floor_ms']:.3f} ms; need <= 1.6): {'MET' if worst <= 1.6 else 'MISSED'}")
    tf = [r for r in res["rows"] if r["model"] == "transformer" and "decode_ms" in r]
    if tf:
        r = tf[-1]
        out.append(f"decode {label:8s} Transformer at ctx {r['ctx']}: {r['decode_ms']:.3f} ms/token, cache "
                   f"{r['state_mib']:.0f} MiB, peak {r.get('decode_peak_gib') or 0:.1f} GiB")
    return out


def main(folder: str) -> None:
    folder = Path(folder)
    checks = load(folder, "checks.json")
    if checks:
        bad = [c["check"] for c in checks["checks"] if not c["ok"]]
        print(f"checks: {len(checks['checks']) - len(bad)}/{len(checks['checks'])} passed" +
              (f", FAILED {bad}" if bad else ""))
    verdicts = []
    trains = [r for r in (load(folder, "train_throughput.json"), load(folder, "train_throughput_compile.json")) if r]
    for res in trains:
        common.print_table(res["rows"], ["model", "size", "ctx", "ckpt", "step_ms", "tokens_per_s", "mfu", "peak_gib",
                                         "speedup_vs_transformer", "error"],
                           f"train, compile={res['args']['compile']}, {res['env'].get('gpu')}")
    verdicts += train_verdicts(trains)
    for name, label in (("decode.json", "not compiled"), ("decode_compile.json", "compiled")):
        res = load(folder, name)
        if res:
            common.print_table(res["rows"], ["model", "fused", "ctx", "prefill_ms", "decode_ms", "floor_ms", "x_floor",
                                             "decode_eager_ms", "state_mib", "decode_peak_gib", "error"],
                               f"decode ({label}), {res['env'].get('gpu')}")
            verdicts += decode_verdicts(res, label)
    res = load(folder, "modality_tokens.json")
    if res:
        common.print_table(res["rows"], ["model", "reduction", "modality_tokens", "encoder_adapter_ms", "ttft_ms",
                                         "decode_ms", "total_ms", "error"], "Figure 2: time vs modality tokens")
    print("\n== acceptance (issue 7)")
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".device_out")
