"""Shared pieces of the end-to-end benches: models, synthetic batches, FLOP counts, timing, device ceilings, JSON.

Models are random (nothing is downloaded): RWKV-7 with BlinkDL's initialisation, the Transformer baseline with
Llama's, the SigLIP2-B/16-384 vision tower as the timm ViT that open_clip builds for it ("vit_base_patch16_siglip_384":
576 patch tokens x 768, no class token; we take the last block's output after the final norm, as
`OpenClipVisionEncoder` does). Building it with timm directly keeps open_clip (and whisper, which
`modrwkv.encoders` imports) off the device machine: timm is installed there, so the benches need no carried wheel.

Timing follows /work/.library/device/METHOD.md: warm-up first (Triton compilation, cuBLAS handles), CUDA events,
median of several repeats; no zero weights (RWKV-7 initialises att.output and ffn.value to zero, and a product
with zeros can run faster than with real data), so those are filled with small random values.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

# bench/ is on sys.path when a bench runs as `python bench/<name>.py` (and in pytest: pyproject's pythonpath);
# modrwkv is the installed package (`pip install -e .`) or PYTHONPATH=src (the device scripts)
from transformer_baseline import TransformerConfig, TransformerLM

from modrwkv.adapters import build_adapter
from modrwkv.backbone.config import RWKV7Config
from modrwkv.backbone.model import RWKV7
from modrwkv.data.chat import IGNORE_INDEX, PLACEHOLDER_ID, TURN_START, ChatTemplate
from modrwkv.model import ModRWKV

H100_BF16_DENSE_TFLOPS = 989.4  # NVIDIA H100 SXM datasheet, dense bf16 tensor-core peak (MFU denominator)


# ---- environment ------------------------------------------------------------------------------------------------
def environment() -> dict:
    """Card, software versions and date: what every result file records."""
    info = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(), "argv": sys.argv}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        prop = torch.cuda.get_device_properties(0)
        info.update(gpu=prop.name, sm_count=prop.multi_processor_count, gpu_mem_gib=round(prop.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    else:
        info["gpu"] = None
    return info


def write_json(path: str | os.PathLike | None, obj) -> None:
    """Write ``obj`` to ``path`` (None: to $OUT/<nothing>; skipped). Creates the folder."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str))


def default_out(name: str) -> str | None:
    """$OUT/<name> when $OUT is set (the device machine), else None."""
    out = os.environ.get("OUT")
    return str(Path(out) / name) if out else None


def print_table(rows: list[dict], cols: list[str], title: str = "") -> None:
    """A plain fixed-width table (the device reply carries only the end of stdout: keep it short)."""
    if title:
        print(f"\n== {title}")
    if not rows:
        print("(no rows)")
        return

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


# ---- timing and memory ------------------------------------------------------------------------------------------
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, device, warmup: int = 2, iters: int = 5) -> dict:
    """Run ``fn`` ``warmup`` times, then time ``iters`` runs one by one (CUDA events on GPU, a host clock on CPU).
    Returns {"median_ms", "min_ms", "times_ms"}."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    cuda = torch.device(device).type == "cuda"
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "times_ms": times}


def reset_peak(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_ceilings(device, nbytes: int = 2**30, n: int = 8192) -> dict:
    """The two ceilings METHOD.md asks for, measured here: device-to-device copy bandwidth (bytes read + written)
    and a bf16 n x n x n matrix product on random data. None on CPU."""
    if torch.device(device).type != "cuda":
        return {"copy_GBps": None, "matmul_TFLOPs": None}
    buf = {"src": torch.randn(nbytes // 4, device=device)}
    buf["dst"] = torch.empty_like(buf["src"])
    t = time_fn(lambda: buf["dst"].copy_(buf["src"]), device, warmup=3, iters=10)["median_ms"]
    bw = 2 * nbytes / (t * 1e-3) / 1e9
    buf = {"a": torch.randn(n, n, device=device, dtype=torch.bfloat16),
           "b": torch.randn(n, n, device=device, dtype=torch.bfloat16)}
    t = time_fn(lambda: buf["a"] @ buf["b"], device, warmup=3, iters=10)["median_ms"]
    buf.clear()
    free_memory()
    return {"copy_GBps": bw, "matmul_TFLOPs": 2 * n**3 / (t * 1e-3) / 1e12}


# ---- models -----------------------------------------------------------------------------------------------------
TINY_RWKV = dict(n_layer=2, n_embd=128, head_size=64, vocab_size=1024, dim_w_lora=32, dim_a_lora=32, dim_v_lora=16,
                 dim_g_lora=32)


def rwkv_config(size: str) -> RWKV7Config:
    """A named RWKV-7 size; "tiny" here is a CPU smoke size with a 1024-token vocabulary."""
    if size == "tiny":
        return RWKV7Config(**TINY_RWKV)
    return RWKV7Config.from_name(size)


@torch.no_grad()
def fill_zero_matrices_(model: nn.Module, std: float = 0.02) -> None:
    """Give every all-zero weight matrix small random values (RWKV-7's att.output, ffn.value and LoRA first layers):
    timing products with zeros would flatter the numbers, and a zero output projection hides the attention."""
    for p in model.parameters():
        if p.dim() == 2 and not p.is_meta and not bool(p.any()):
            p.normal_(0.0, std)


def build_backbone(arch: str, size: str, device, dtype=torch.bfloat16, kv_heads: int | None = None,
                   head_dim: int = 128, grad_checkpointing: bool = False, wkv_backend: str = "auto") -> nn.Module:
    """``arch`` "rwkv": an RWKV7 of size ``size``; "transformer": the baseline matched to it. Built on ``device``."""
    cfg = rwkv_config(size)
    with torch.device(device):  # build on the GPU: the orthogonal inits of a 1.5B model are slow on two CPU cores
        if arch == "rwkv":
            model = RWKV7(cfg, wkv_backend=wkv_backend, grad_checkpointing=grad_checkpointing)
        elif arch == "transformer":
            model = TransformerLM(TransformerConfig.matched_to(cfg, head_dim=head_dim, n_kv_head=kv_heads),
                                  grad_checkpointing=grad_checkpointing)
        else:
            raise ValueError(f"unknown arch {arch!r}: rwkv or transformer")
    fill_zero_matrices_(model)
    return model.to(dtype)


class BenchVisionTower(nn.Module):
    """A frozen ViT with SigLIP2-B/16-384's exact shape (timm's "vit_base_patch16_siglip_384", random weights), or a
    tiny one for CPU smoke runs; the `ModalityEncoder` interface ModRWKV uses (out_dim, num_tokens, forward)."""

    modality = "image"
    variable_length = False

    def __init__(self, tiny: bool = False):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        # timm's "vit_base_patch16_siglip_384" arguments, spelled out (no dependence on the registry's version)
        args = (dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2) if tiny else
                dict(img_size=384, patch_size=16, embed_dim=768, depth=12, num_heads=12))
        self.trunk = VisionTransformer(**args, class_token=False, global_pool="map", num_classes=0)
        self.image_size = self.trunk.patch_embed.img_size[0]
        grid = self.trunk.patch_embed.grid_size
        self.out_dim = int(self.trunk.embed_dim)
        self.num_tokens = int(grid[0] * grid[1]) + int(self.trunk.num_prefix_tokens)
        self.frozen = True
        self.requires_grad_(False)
        self.eval()

    def set_frozen(self, frozen: bool = True):
        self.requires_grad_(not frozen)
        return self

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: eval mode always

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, S, S) -> (B, num_tokens, out_dim): last block, final norm, before the MAP pooling head."""
        return self.trunk.forward_features(x.to(self.trunk.patch_embed.proj.weight.dtype))

    def matmul_params(self) -> int:
        """Weights used as matrix products per token by forward_features (the MAP head is not run)."""
        return sum(p.numel() for n, p in self.trunk.named_parameters()
                   if p.dim() >= 2 and not n.startswith(("attn_pool", "head")) and "pos_embed" not in n)


class ByteTokenizer:
    """A stand-in for the World tokenizer (whose Rust package is not on the device): bytes -> ids 1..256."""

    def encode(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        return bytes(i - 1 for i in ids if 1 <= i <= 256).decode("utf-8", errors="replace")


def build_mllm(arch: str, size: str, device, dtype=torch.bfloat16, tiny_encoder: bool = False,
               adapter: str = "mlp", kernel_size: int = 3, stride: int = 2, kv_heads: int | None = None,
               grad_checkpointing: bool = False) -> ModRWKV:
    """Encoder (frozen) + adapter + backbone, all on ``device`` in ``dtype``: the same `ModRWKV` wrapper (loss over
    labelled tokens, head at labelled positions only) for both backbones."""
    backbone = build_backbone(arch, size, device, dtype, kv_heads=kv_heads, grad_checkpointing=grad_checkpointing)
    encoder = BenchVisionTower(tiny=tiny_encoder).to(device=device, dtype=dtype)
    with torch.device(device):
        adp = build_adapter(adapter, encoder.out_dim, backbone.config.n_embd, kernel_size=kernel_size, stride=stride)
    model = ModRWKV(encoder, adp.to(dtype), backbone, template=ChatTemplate(ByteTokenizer()))
    model.freeze(encoder=True, adapter=False, backbone=False)
    return model


# ---- synthetic data ---------------------------------------------------------------------------------------------
def synthetic_batch(rows: int, ctx: int, image_tokens: int, image_size: int, vocab: int, device,
                    dtype=torch.bfloat16, seed: int = 0) -> dict:
    """``rows`` samples of ``ctx`` tokens each, packed into one row as PackedCollate does:
    "\\x16User: " + ``image_tokens`` placeholders + text; labels on the text after the image (the LM head then runs
    on nearly every position: the expensive case). Random ids and random images (never zeros)."""
    g = torch.Generator().manual_seed(seed)
    prefix = [TURN_START] + [b + 1 for b in b"User: "]
    n_text = ctx - len(prefix) - image_tokens
    if n_text < 2:
        raise ValueError(f"context {ctx} too short for {image_tokens} image tokens")
    ids, labels = [], []
    for _ in range(rows):
        text = torch.randint(257, min(vocab, 65530), (n_text,), generator=g)
        ids.append(torch.cat([torch.tensor(prefix), torch.full((image_tokens,), PLACEHOLDER_ID), text]))
        labels.append(torch.cat([torch.full((len(prefix) + image_tokens,), IGNORE_INDEX), text]))
    cu = torch.arange(rows + 1, dtype=torch.int32) * ctx
    images = torch.randn(rows, 3, image_size, image_size, generator=g)
    return {"input_ids": torch.cat(ids)[None].to(device), "labels": torch.cat(labels)[None].to(device),
            "cu_seqlens": cu.to(device), "modality_inputs": images.to(device=device, dtype=dtype),
            "modality_lengths": None}


# ---- FLOP counting ----------------------------------------------------------------------------------------------
def block_matmul_params(backbone: nn.Module) -> int:
    """Weights of the blocks that act as matrix products on every token: every 2-D parameter of the blocks except
    RWKV-7's r_k ([H, N], an elementwise weight) and layer 0's value-residual LoRA (stored, never used)."""
    total = 0
    for name, p in backbone.blocks.named_parameters():
        if p.dim() != 2 or name.endswith("r_k") or name in ("0.att.v1", "0.att.v2"):
            continue
        total += p.numel()
    return total


def sequence_mixing_flops_per_token(backbone: nn.Module, ctx: int) -> float:
    """Forward FLOPs per token of the part that is not a weight product, summed over layers.

    RWKV-7 (recurrent form, per head with K = V = N): a^T S, b (a^T S)^T, k v^T and S^T r are 2 N^2 each: 8 N^2.
    Causal attention: q k^T and p v over on average ctx / 2 earlier positions: 2 * 2 * (ctx / 2) * (heads * d)."""
    cfg = backbone.config
    if isinstance(backbone, RWKV7):
        return cfg.n_layer * cfg.n_head * 8 * cfg.head_size**2
    return cfg.n_layer * 2 * ctx * cfg.n_head * cfg.head_dim


def train_step_flops(model: ModRWKV, batch: dict, ctx: int) -> dict:
    """Model FLOPs of one training step (fwd + bwd = 3x fwd for trained parts; the frozen encoder forward only;
    recomputation from gradient checkpointing not counted, as in the MFU definition of PaLM)."""
    backbone = model.backbone
    T = batch["input_ids"].numel()
    targets = batch["labels"][:, 1:].clone()
    cu = batch["cu_seqlens"]
    targets[:, cu[1:-1].long() - 1] = IGNORE_INDEX
    n_labels = int((targets != IGNORE_INDEX).sum())
    blocks = 6 * block_matmul_params(backbone) * T
    head = 6 * backbone.head.weight.numel() * n_labels
    mixing = 3 * sequence_mixing_flops_per_token(backbone, ctx) * T
    n_img = batch["modality_inputs"].shape[0]
    enc = model.encoder
    enc_tokens = enc.num_tokens * n_img
    depth = len(enc.trunk.blocks)
    encoder = 2 * enc.matmul_params() * enc_tokens + depth * 4 * enc.num_tokens**2 * enc.out_dim * n_img
    adapter = 6 * sum(p.numel() for p in model.adapter.parameters() if p.dim() >= 2) * enc_tokens
    total = blocks + head + mixing + encoder + adapter
    return {"total": total, "blocks": blocks, "head": head, "sequence_mixing": mixing, "encoder": encoder,
            "adapter": adapter, "tokens": T, "labelled": n_labels}


def decode_weight_bytes(backbone: nn.Module) -> int:
    """Bytes one decode step must read at least: every parameter once, except the embedding table (one row)."""
    total = sum(p.numel() * p.element_size() for p in backbone.parameters())
    emb = backbone.emb.weight
    return total - emb.numel() * emb.element_size() + emb.shape[1] * emb.element_size()


# ---- torch.compile ----------------------------------------------------------------------------------------------
_COMPILED: set = set()


def compile_backend() -> str:
    """Inductor, or $BENCH_COMPILE_BACKEND ("aot_eager": trace-only checks on a CPU)."""
    return os.environ.get("BENCH_COMPILE_BACKEND", "inductor")


def compile_blocks(arch: str, which: str = "forward", mode: str | None = None) -> None:
    """torch.compile the block code at class level, once per process: inductor fuses the many small elementwise
    ops (token shift + 6-way mixing, LoRA activations, normalisations, gate) into few kernels.

    The WKV-7 kernels stay outside the compiled graphs (`torch.compiler.disable`: the Triton autograd function and
    its host-side layout code are already one kernel each); dynamo splits the block there. Parameters are graph
    inputs (inlined nn modules), so one graph serves all layers of one kind (layer 0 has its own: ln0, v_first)."""
    from modrwkv.backbone.compile import configure_inductor

    key = (arch, which)
    if key in _COMPILED:
        return
    # both models under the same Inductor settings (cache sizes, no mix-order reductions): in the measured runs the
    # RWKV-7 model was compiled first in the same process, so the Transformer already ran with them
    configure_inductor()
    if arch == "rwkv":
        from modrwkv.backbone import layers

        cls = layers.Block  # the WKV-7 calls in layers are compiler-disabled already
    else:
        from transformer_baseline import DecoderBlock as cls
    setattr(cls, which, torch.compile(getattr(cls, which), mode=mode, dynamic=None, backend=compile_backend()))
    _COMPILED.add(key)
