"""Benchmark of the WKV-7 kernels on one GPU: our Triton kernels vs fla 0.6.0 (optional) vs our PyTorch chunked form.

    PYTHONPATH=src python bench/wkv7.py [--quick] [--out results.json]

Checks correctness first (our kernel and fla against an fp64 reference on fresh random inputs), then times with
triton.testing.do_bench (median, ms): forward (no grad) and forward+backward (torch.autograd.grad, so no .grad
accumulation is timed), at (B, T, H) = (8, 4096, 32), (2, 16384, 32), (1, 32768, 32), K = 64, bf16, a varlen batch,
and the decode step for 1, 16 and 64 sequences. Prints the memory floor (bytes / measured copy bandwidth) and ratios.

    PYTHONPATH=src python bench/wkv7.py --seqpar

times the sequence-parallel passes (triton_seqpar.py, CONFIG["SEQPAR"] = "on") side by side with the sequential
kernels ("off") and fla (after its own correctness check), at the shapes of --shapes; --passes adds the forward and
the state-gradient pass alone for segments of 2, 4 and 8 chunks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

import torch
import triton

from modrwkv.kernels.chunked import wkv7_chunked
from modrwkv.kernels.reference import LOG_DECAY_MIN, wkv7_naive, wkv7_step_torch
from modrwkv.kernels.testing import wkv7_inputs
from modrwkv.kernels.triton_chunk import wkv7_triton
from modrwkv.kernels.triton_decode import wkv7_step_triton

K = 64

try:
    import fla
    from fla.ops.rwkv7 import chunk_rwkv7, fused_mul_recurrent_rwkv7, fused_recurrent_rwkv7

    FLA = getattr(fla, "__version__", "?")
except Exception as e:  # fla is optional: the bench still times our kernels
    print(f"fla not available ({type(e).__name__}: {e}); timing our kernels only", file=sys.stderr)
    FLA = None


def make_inputs(B, T, H, dtype=torch.bfloat16, seed=0, requires_grad=False):
    """([r, w, k, v, a, b] on the GPU in RWKV-7's ranges (modrwkv.kernels.testing), kk, a_gate) with K = 64."""
    x = wkv7_inputs(B, T, H, K, seed, dtype, device="cuda")
    return [t.requires_grad_(requires_grad) for t in x.args], x.kk, x.a_gate


def rel(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def worst_error(errs) -> float:
    """The largest relative error, NaN counted as inf (max() would skip a NaN that is not first)."""
    return max(e if e == e else float("inf") for e in errs)


def ours(r, w, k, v, a, b, h0=None, cu=None):
    return wkv7_triton(r, w, k, v, a, b, initial_state=h0, output_final_state=True, cu_seqlens=cu)


@contextlib.contextmanager
def _seqpar_mode(mode):
    from modrwkv.kernels import triton_chunk as tc

    old = tc.CONFIG["SEQPAR"]
    tc.CONFIG["SEQPAR"] = mode
    try:
        yield
    finally:
        tc.CONFIG["SEQPAR"] = old


def ours_seqpar(r, w, k, v, a, b, h0=None, cu=None):
    """Our kernels with the sequence-parallel forward and state-gradient pass (CONFIG["SEQPAR"] = "on")."""
    with _seqpar_mode("on"):
        return ours(r, w, k, v, a, b, h0=h0, cu=cu)


def ours_sequential(r, w, k, v, a, b, h0=None, cu=None):
    """Our kernels with the sequential forward and state-gradient pass only (CONFIG["SEQPAR"] = "off")."""
    with _seqpar_mode("off"):
        return ours(r, w, k, v, a, b, h0=h0, cu=cu)


def fla_chunk(r, w, k, v, a, b, h0=None, cu=None):
    return chunk_rwkv7(r=r, w=w, k=k, v=v, a=a, b=b, scale=1.0, initial_state=h0, output_final_state=True,
                       cu_seqlens=None if cu is None else cu.long(), lower_bound=LOG_DECAY_MIN)


def torch_chunk(r, w, k, v, a, b, h0=None, cu=None):
    return wkv7_chunked(r, w, k, v, a, b, initial_state=h0, output_final_state=True, cu_seqlens=cu)


def check_correctness(log, seqpar=False):
    """bf16 inputs, a length not divisible by the chunk, an initial state; values and all gradients vs fp64."""
    B, T, H = 2, 1000, 4
    xs, _, _ = make_inputs(B, T, H, seed=1234)
    h0 = torch.randn(B, H, K, K, device="cuda")
    do = torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16)
    dht = torch.randn(B, H, K, K, device="cuda")
    ref_in = [x.double().requires_grad_() for x in xs] + [h0.double().requires_grad_()]
    ro, rht = wkv7_naive(*ref_in[:6], initial_state=ref_in[6], output_final_state=True)
    ref_g = torch.autograd.grad([ro, rht], ref_in, [do.double(), dht.double()])
    ok = True
    impls = [("ours", ours)] + ([("seqpar", ours_seqpar)] if seqpar else []) + ([("fla", fla_chunk)] if FLA else [])
    for name, fn in impls:
        xin = [x.clone().requires_grad_() for x in xs] + [h0.clone().requires_grad_()]
        o, ht = fn(*xin[:6], h0=xin[6])
        grads = torch.autograd.grad([o, ht], xin, [do, dht])
        errs = {"o": rel(o, ro), "ht": rel(ht, rht)}
        errs.update({f"d{n}": rel(gx, gr) for n, gx, gr in zip(["r", "w", "k", "v", "a", "b", "h0"], grads, ref_g)})
        worst = worst_error(errs.values())
        log(f"correctness {name:6s} bf16 B={B} T={T} H={H}: worst rel err {worst:.2e}  "
            + " ".join(f"{n}={e:.1e}" for n, e in errs.items()))
        ok &= worst < 5e-3 if name in ("ours", "seqpar") else True
    # decode step vs fp64
    xs1, _, _ = make_inputs(16, 1, 32, seed=7)
    x1 = [x[:, 0] for x in xs1]
    st = torch.randn(16, 32, K, K, device="cuda")
    o, s = wkv7_step_triton(*x1, st)
    ro, rs = wkv7_step_torch(*[x.double() for x in x1], st.double())
    log(f"correctness decode: o {rel(o, ro):.1e} state {rel(s, rs):.1e}")
    ok &= rel(o, ro) < 5e-3 and rel(s, rs) < 1e-5
    return ok


def bench(fn, warmup=25, rep=100):
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def copy_bandwidth():
    x = torch.empty(2 * 1024**3 // 4, device="cuda")
    y = torch.empty_like(x)
    t = bench(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / (t * 1e-3)


def time_seq(name, B, T, H, cu=None, with_torch=False, seqpar=False):
    xs, _, _ = make_inputs(B, T, H, seed=B * T + H, requires_grad=True)
    do = torch.randn_like(xs[3])
    rows = {}
    impls = [("ours", ours)]
    if seqpar:
        impls = [("sequential", ours_sequential), ("seqpar", ours_seqpar)]
    impls += [("fla", fla_chunk)] if FLA else []
    impls += [("torch", torch_chunk)] if with_torch else []
    for iname, fn in impls:
        def fwd(fn=fn):
            with torch.no_grad():
                return fn(*xs, cu=cu)

        def fwdbwd(fn=fn):
            o, _ = fn(*xs, cu=cu)
            return torch.autograd.grad(o, xs, do)

        rows[iname] = (bench(fwd), bench(fwdbwd))
    return rows


def time_decode(N, H=32, with_fla=True):
    xs, kk, a_ = make_inputs(N, 1, H, seed=N)
    x1 = [x[:, 0].contiguous() for x in xs]
    st = torch.randn(N, H, K, K, device="cuda")
    steps = {"ours": lambda: wkv7_step_triton(*x1, st)}
    if FLA and with_fla:
        r, w, k, v, a, b = xs
        steps["fla_mul"] = lambda: fused_mul_recurrent_rwkv7(r, w, k, v, kk, a_, scale=1.0, initial_state=st,
                                                             output_final_state=True)
        steps["fla_dplr"] = lambda: fused_recurrent_rwkv7(r, w, k, v, a, b, scale=1.0, initial_state=st,
                                                          output_final_state=True)
    rows = {}
    for name, step in steps.items():
        # eager: a step this small is bounded by the host's launch path (noisy from run to run); CUDA graph replay,
        # which the model's decoding uses (bench/decode.py), times the GPU alone
        rows[name] = bench(step)
        rows[name + "_graph"] = triton.testing.do_bench_cudagraph(step, rep=100, return_mode="median")
    if FLA and with_fla:
        # same math: check fla's decode agrees with ours on these inputs
        o_f, s_f = fused_mul_recurrent_rwkv7(r, w, k, v, kk, a_, scale=1.0, initial_state=st, output_final_state=True)
        o_o, s_o = wkv7_step_triton(*x1, st)
        rows["agree"] = rel(s_o, s_f)
    return rows


def _us_pair(rows, name):
    """'eager / graph us' of one decode implementation, or '-'."""
    return f"{rows[name] * 1e3:.1f} / {rows[name + '_graph'] * 1e3:.1f} us" if name in rows else "-"


def decode_sweep(log):
    """--decode-sweep: the decode step's V-block and warps at N = 1, 16, 64 (H=32), beside fla's two steps."""
    from modrwkv.kernels import triton_decode as td

    log("| N | BV | warps | ours, eager / CUDA graph | fla fused_mul | fla fused_recurrent |")
    log("|---|---|---|---|---|---|")
    for N in (1, 16, 64):
        fla_rows = None
        for bv in (16, 32, 64):
            for warps in (1, 2, 4, 8):
                if bv * 64 // (32 * warps) < 4:  # fewer than 4 state elements per thread: not worth a launch
                    continue
                td.DECODE_CONFIG.update(BV=bv, WARPS=warps)
                rows = time_decode(N, with_fla=fla_rows is None)
                fla_rows = fla_rows or rows
                log(f"| {N} | {bv} | {warps} | {_us_pair(rows, 'ours')} | {_us_pair(fla_rows, 'fla_mul')} | "
                    f"{_us_pair(fla_rows, 'fla_dplr')} |")
    td.DECODE_CONFIG.update(BV=None, WARPS=None)


SWEEP = [  # earlier sweeps (WARPS, STAGES, BV, STATE_DTYPE, BT): bench/NOTES_wkv7.md
    {"DOT": "tf32", "DOT_STATE": "tf32"},  # the kernels before fp16 products
    {},  # the default: DOT "auto" = fp16 intra-chunk products, bf16 state products
    {"DOT": "bf16", "DOT_STATE": "bf16", "WARPS_GRAD": 4},  # over the 5e-3 error bound: the speed it would give
    {"MAXNREG_GRAD": None},  # the gradient kernel at the compiler's 255 registers: two blocks per multiprocessor
    {"MAXNREG_GRAD": 128},  # four blocks, more spills
    {"_no_check": True},  # what the fp16 range safety costs: without the overflow check and fallback launches
    {"_ux": "float32"},  # fp32 u / dX buffers, as before the fallback stored them scaled (fp16 buffers saved 0.55 ms)
]


def _time_config(tc, cfg, big, do):
    """Times of one configuration: inference fwd, fwd saving states, the dS pass, the gradient kernel, fwd+bwd."""
    t_f = bench(lambda: tc._fwd(*big, None, False, None, False, cfg))
    t_fs = bench(lambda: tc._fwd(*big, None, False, None, True, cfg))
    _, _, saved, layout = tc._fwd(*big, None, False, None, True, cfg)
    sdt = saved[0].dtype
    # the kernels alone (the fp16 fallback launches are in fwd+bwd); dO scaled exactly when _bwd scales it, so the
    # "_no_check" ablation drops the scale here too
    gmax = tc._dout_max(do) if tc._fp16_check(cfg, big[0])[0] is not None else None
    t_ds = bench(lambda: tc._bwd_dstate(*big[:3], *big[4:], layout, do, None, False, None, sdt, cfg, gmax))
    dsaved, _, _ = tc._bwd_dstate(*big[:3], *big[4:], layout, do, None, False, None, sdt, cfg, gmax)
    t_g = bench(lambda: tc._bwd_grad(*big, saved, dsaved, layout, do, None, cfg, gmax))
    xg = [x.detach().requires_grad_() for x in big]

    def fb():
        o, _ = wkv7_triton(*xg)
        return torch.autograd.grad(o, xg, do)

    return t_f, t_fs, t_ds, t_g, bench(fb)


def sweep(log, configs):
    """Correctness (bf16 vs fp64, B=1 T=1000 H=32 with an initial state) and timings of each launch configuration
    at B=8 T=4096 H=32; fwd = inference forward, fwd_s = forward saving states, ds/grad = the two backward kernels."""
    from modrwkv.kernels import triton_chunk as tc

    xs, _, _ = make_inputs(1, 1000, 32, seed=99)
    h0 = torch.randn(1, 32, K, K, device="cuda")
    do_c = torch.randn(1, 1000, 32, K, device="cuda", dtype=torch.bfloat16)
    ref_in = [x.double().requires_grad_() for x in xs] + [h0.double().requires_grad_()]
    ro, _ = wkv7_naive(*ref_in[:6], initial_state=ref_in[6])
    ref_g = torch.autograd.grad(ro, ref_in, do_c.double())
    big, _, _ = make_inputs(8, 4096, 32, seed=5)
    do = torch.randn_like(big[3])
    log("| config | worst rel err | fwd | fwd_s | ds | grad | fwd+bwd | regs/spills fwd, ds, grad |")
    log("|---|---|---|---|---|---|---|---|")
    for over in configs:
        cfg = dict(tc.CONFIG)
        cfg.update({k: v for k, v in over.items() if not k.startswith("_")})
        old = dict(tc.CONFIG)
        try:
            stack = _ablations(tc, over)
            tc.CONFIG.update(cfg)
            xin = [x.clone().requires_grad_() for x in xs] + [h0.clone().requires_grad_()]
            o, _ = wkv7_triton(*xin[:6], initial_state=xin[6])
            grads = torch.autograd.grad(o, xin, do_c)
            err = worst_error([rel(o, ro)] + [rel(g, gr) for g, gr in zip(grads, ref_g)])
            t_f, t_fs, t_ds, t_g, t_fb = _time_config(tc, cfg, big, do)
            res = ", ".join(f"{getattr(kk, 'n_regs', '?')}/{getattr(kk, 'n_spills', '?')}"
                            for kk in (tc.LAST_KERNELS.get(n) for n in ("fwd", "bwd_dstate", "bwd_grad")))
            name = ",".join(f"{a}={str(b).replace('torch.', '')}" for a, b in over.items()) or "default"
            log(f"| {name} | {err:.2e} | {t_f:.3f} | {t_fs:.3f} | {t_ds:.3f} | {t_g:.3f} | {t_fb:.3f} | {res} |")
        except Exception as e:  # a config that fails to compile is reported, not fatal
            log(f"| {over} | FAILED {type(e).__name__}: {str(e)[:200]} |")
        finally:
            stack.close()
            tc.CONFIG.clear()
            tc.CONFIG.update(old)
        torch.cuda.empty_cache()


def _ablations(tc, over) -> contextlib.ExitStack:
    """Bench-only switches of a sweep entry, for measuring what the fp16 range safety costs (they make the kernels
    unsafe for values beyond fp16, so they are not library options): "_no_check" drops the overflow flags, the
    gated tf32 launches and the dO scale, "_ux": "float32" keeps u and dX in fp32 instead of fp16."""
    from unittest import mock

    stack = contextlib.ExitStack()
    if over.get("_no_check"):
        stack.enter_context(mock.patch.object(tc, "_fp16_check", lambda cfg, x, flag=None: (None, None)))
    if "_ux" in over:
        dtype = getattr(torch, over["_ux"])
        stack.enter_context(mock.patch.object(tc, "_ux_dtype", lambda cfg, x: dtype))
    return stack


def seqpar_passes(log, B, T, H, segs=(2, 4, 8)):
    """The forward saving states and the state-gradient pass alone, sequential and sequence-parallel (segments of
    ``segs`` chunks), bf16 inputs, ms."""
    from modrwkv.kernels import triton_chunk as tc

    xs, _, _ = make_inputs(B, T, H, seed=11)
    r, w, k, v, a, b = xs
    do = torch.randn_like(v)
    parts = []
    for name, over in [("sequential", {"SEQPAR": "off"})] + [(f"seg{n}", {"SEQPAR": "on", "SEQPAR_SEG": n})
                                                             for n in segs]:
        cfg = dict(tc.CONFIG, **over)
        flag, _ = tc._fp16_check(cfg, r)
        gmax = tc._dout_max(do) if flag is not None else None
        t_f = bench(lambda cfg=cfg, flag=flag: tc._fwd(*xs, None, False, None, True, cfg, flag))
        _, _, saved, layout = tc._fwd(*xs, None, False, None, True, cfg, flag)
        t_d = bench(lambda cfg=cfg, flag=flag, gmax=gmax, saved=saved, layout=layout: tc._bwd_dstate(
            r, w, k, a, b, layout, do, None, False, None, saved[0].dtype, cfg, gmax, flag))
        parts.append(f"{name}: fwd saving {t_f:.3f}, dS pass {t_d:.3f}")
        del saved
        torch.cuda.empty_cache()
    log(f"passes B={B} T={T} H={H} (ms): " + "; ".join(parts))


SEQPAR_SHAPES = [(2, 16384, 32), (1, 32768, 32), (8, 4096, 32), (16, 2048, 16)]


def run_seqpar(log, shapes=None, passes=False):
    """--seqpar: correctness of the sequence-parallel passes first, then the sequential kernels, the
    sequence-parallel ones and fla side by side, fwd and fwd+bwd, and the passes alone. CONFIG["SEQPAR"] "auto"
    picks one of the two: its choice is logged per shape."""
    from modrwkv.kernels import triton_chunk as tc
    from modrwkv.kernels.triton_seqpar import use_seqpar

    if not check_correctness(log, seqpar=True):
        log("CORRECTNESS FAILED: not timing")
        sys.exit(1)
    table = []
    for B, T, H in shapes or SEQPAR_SHAPES:
        auto = use_seqpar(dict(tc.CONFIG, SEQPAR="auto"), B, H, B * T, torch.device("cuda"))
        rows = time_seq("dense", B, T, H, seqpar=True)
        log(f"measured B={B} T={T} H={H} (fwd ms, fwd+bwd ms; auto takes {'seqpar' if auto else 'sequential'}): "
            f"{rows}")
        table.append((f"B={B} T={T} H={H}", rows, auto))
        torch.cuda.empty_cache()
    log("")
    log("| shape (bf16, K=64) | sequential fwd | seqpar fwd | fla fwd | sequential fwd+bwd | seqpar fwd+bwd | "
        "fla fwd+bwd | auto |")
    log("|---|---|---|---|---|---|---|---|")
    for name, rows, auto in table:
        o, s, f = rows["sequential"], rows["seqpar"], rows.get("fla")
        fs = lambda x: f"{x:.3f}" if x is not None else "-"  # noqa: E731
        log(f"| {name} | {fs(o[0])} | {fs(s[0])} | {fs(f[0] if f else None)} | {fs(o[1])} | {fs(s[1])} | "
            f"{fs(f[1] if f else None)} | {'seqpar' if auto else 'sequential'} |")
    for B, T, H in (shapes or SEQPAR_SHAPES) if passes else ():
        seqpar_passes(log, B, T, H)


def main():
    global FLA
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="only the first shape and N=16 decode")
    p.add_argument("--out", default=None, help="write all numbers as JSON here")
    p.add_argument("--tail", action="store_true", help="only: the varlen batch (ours) and the decode steps")
    p.add_argument("--profile", action="store_true", help="only: one forward and one backward (for ncu)")
    p.add_argument("--sweep", action="store_true", help="only: compare launch configurations at the first shape")
    p.add_argument("--seqpar", action="store_true",
                   help="only: the sequence-parallel passes vs the sequential ones and fla, and the passes alone")
    p.add_argument("--passes", action="store_true", help="with --seqpar: also time the passes alone")
    p.add_argument("--shapes", default=None, help="with --seqpar: BxTxH,... (default: the four of SEQPAR_SHAPES)")
    p.add_argument("--no-fla", action="store_true", help="time our kernels only (fla's first autotuning on a fresh "
                   "machine takes minutes)")
    p.add_argument("--decode-sweep", action="store_true", help="only: the decode step's launch settings")
    p.add_argument("--config", default=None, help='JSON overrides of triton_chunk.CONFIG (and of '
                   'triton_seqpar.SEQPAR_CONFIG), e.g. \'{"BT": 32}\'')
    args = p.parse_args()
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    if args.no_fla:
        FLA = None
    props = torch.cuda.get_device_properties(0)
    log(f"card: {props.name}, torch {torch.__version__}, triton {triton.__version__}, fla {FLA}")
    if args.config:
        from modrwkv.kernels import triton_chunk as tc

        over = json.loads(args.config)
        if "STATE_DTYPE" in over:
            over["STATE_DTYPE"] = getattr(torch, over["STATE_DTYPE"])
        tc.CONFIG.update(over)
        log(f"config: {tc.CONFIG}")
    if args.sweep:
        sweep(log, SWEEP)
        return
    if args.decode_sweep:
        decode_sweep(log)
        return
    if args.seqpar:
        shapes = [tuple(int(x) for x in t.split("x")) for t in args.shapes.split(",")] if args.shapes else None
        run_seqpar(log, shapes, args.passes)
        return
    if args.tail:
        lengths = torch.randint(500, 7000, (8,), generator=torch.Generator().manual_seed(0))
        lengths[-1] = 32768 - int(lengths[:-1].sum())
        cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to("cuda", torch.int32)
        fla_saved, FLA = FLA, None  # fla's varlen autotuning does not fit this run
        log(f"measured varlen {lengths.tolist()} H=32 (fwd ms, fwd+bwd ms): {time_seq('varlen', 1, 32768, 32, cu=cu)}")
        FLA = fla_saved
        for N in (1, 16, 64):
            log(f"decode N={N} H=32 (ms): {time_decode(N)}")
        return
    if args.profile:
        xs, _, _ = make_inputs(8, 4096, 32, seed=3, requires_grad=True)
        o, _ = wkv7_triton(*xs)
        torch.autograd.grad(o, xs, torch.randn_like(o))
        torch.cuda.synchronize()
        return
    if not check_correctness(log):
        log("CORRECTNESS FAILED: not timing")
        sys.exit(1)
    bw = copy_bandwidth()
    log(f"copy bandwidth {bw / 1e12:.2f} TB/s (read + write)")

    shapes = [("dense", 8, 4096, 32), ("dense", 2, 16384, 32), ("dense", 1, 32768, 32)]
    if args.quick:
        shapes = shapes[:1]
    results = {"card": props.name, "torch": torch.__version__, "triton": triton.__version__, "fla": FLA,
               "bandwidth": bw, "seq": {}, "decode": {}}
    table = []
    for i, (_, B, T, H) in enumerate(shapes):
        rows = time_seq("dense", B, T, H, with_torch=(i == 0))
        log(f"measured B={B} T={T} H={H} (fwd ms, fwd+bwd ms): {rows}")
        n_el = B * T * H * K
        floor = (7 * n_el * 2 / bw * 1e3, 20 * n_el * 2 / bw * 1e3)
        results["seq"][f"{B}x{T}x{H}"] = {"rows": rows, "floor": floor}
        table.append((f"B={B} T={T} H={H}", rows, floor))
    if not args.quick:
        g = torch.Generator().manual_seed(0)
        lengths = torch.randint(500, 7000, (8,), generator=g)
        lengths[-1] = 32768 - int(lengths[:-1].sum()) if int(lengths[:-1].sum()) < 32768 - 500 else lengths[-1]
        cu = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).to("cuda", torch.int32)
        T = int(cu[-1])
        fla_saved, FLA = FLA, None  # fla's varlen autotuning alone outlasts a 10-minute device call (RESULTS.md)
        rows = time_seq("varlen", 1, T, 32, cu=cu)
        FLA = fla_saved
        log(f"measured varlen {lengths.tolist()} (fwd ms, fwd+bwd ms): {rows}")
        n_el = T * 32 * K
        floor = (7 * n_el * 2 / bw * 1e3, 20 * n_el * 2 / bw * 1e3)
        name = f"varlen {len(lengths)} seqs, T={T}, H=32"
        results["seq"][name] = {"rows": rows, "floor": floor, "lengths": lengths.tolist()}
        table.append((name, rows, floor))

    log("")
    log("| shape (bf16, K=64) | ours fwd | fla fwd | ours fwd+bwd | fla fwd+bwd | torch chunk fwd / fwd+bwd | "
        "floor fwd / fwd+bwd | fla/ours fwd | fla/ours fwd+bwd |")
    log("|---|---|---|---|---|---|---|---|---|")
    for name, rows, floor in table:
        o, f, t = rows["ours"], rows.get("fla"), rows.get("torch")
        fs = lambda x: f"{x:.2f} ms" if x is not None else "-"  # noqa: E731
        log(f"| {name} | {fs(o[0])} | {fs(f[0] if f else None)} | {fs(o[1])} | {fs(f[1] if f else None)} | "
            f"{(fs(t[0]) + ' / ' + fs(t[1])) if t else '-'} | {floor[0]:.2f} / {floor[1]:.2f} ms | "
            f"{(f[0] / o[0]) if f else float('nan'):.2f}x | {(f[1] / o[1]) if f else float('nan'):.2f}x |")

    log("")
    log("| decode step (H=32, K=64, fp32 state), eager / CUDA graph | ours | fla fused_mul_recurrent | "
        "fla fused_recurrent (dplr) | state floor | state rel diff vs fla |")
    log("|---|---|---|---|---|---|")
    for N in ([16] if args.quick else [1, 16, 64]):
        rows = time_decode(N)
        results["decode"][N] = rows
        floor_us = 2 * N * 32 * K * K * 4 / bw * 1e6
        log(f"| N={N} | {_us_pair(rows, 'ours')} | {_us_pair(rows, 'fla_mul')} | {_us_pair(rows, 'fla_dplr')} | "
            f"{floor_us:.1f} us | {rows.get('agree', float('nan')):.1e} |")
    # where the fwd+bwd time goes, and the compiler's resource report
    from modrwkv.kernels import triton_chunk as tc

    xs, _, _ = make_inputs(8, 4096, 32, seed=5)
    do = torch.randn_like(xs[3])
    t_fs = bench(lambda: tc._fwd(*xs, None, False, None, True))
    o, _, saved, layout = tc._fwd(*xs, None, False, None, True)
    t_b = bench(lambda: tc._bwd(*xs, saved, layout, do, None, False, None))
    log(f"breakdown B=8 T=4096 H=32: fwd saving states {t_fs:.3f} ms, bwd kernel {t_b:.3f} ms")
    for name, kern in tc.LAST_KERNELS.items():
        log(f"kernel {name}: regs {getattr(kern, 'n_regs', '?')} spills {getattr(kern, 'n_spills', '?')} "
            f"shared {getattr(kern, 'metadata', None) and getattr(kern.metadata, 'shared', '?')}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
