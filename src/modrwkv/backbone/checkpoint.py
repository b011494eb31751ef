"""RWKV-7 checkpoint formats: BlinkDL ``.pth`` and fla / Hugging Face (config.json + safetensors).

Our parameter names are BlinkDL's; the fla names are a renaming plus transposes and squeezes (RWKV7.md):

    emb.weight            <-> model.embeddings.weight          head.weight <-> lm_head.weight
    ln_out.*              <-> model.norm.*
    blocks.i.ln0/ln1/ln2  <-> model.layers.i.pre_norm/attn_norm/ffn_norm
    att.receptance/key/value/output/ln_x <-> attn.r_proj/k_proj/v_proj/o_proj/g_norm
    att.X1 [C, D]         <-> attn.X_lora.lora.0.weight [D, C]   (X in w, a, v, g)
    att.X2 [D, C]         <-> attn.X_lora.lora.2.weight [C, D]
    att.X0 [1, 1, C]      <-> attn.X_lora.lora.2.bias [C]       (X in w, a, v; g has no bias)
    att.k_k, att.k_a, ffn.x_k [1, 1, C] <-> [C];  att.x_* stay [1, 1, C];  att.r_k [H, N] unchanged
    layer 0's v0/v1/v2 (unused) are dropped by fla
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..safe_load import read_checkpoint
from .config import RWKV7Config

# parameters that may be absent from a file: layer 0's unused value-residual LoRA
OPTIONAL_KEYS = {"blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"}

_LAYER_PARTS = {"ln0": "pre_norm", "ln1": "attn_norm", "ln2": "ffn_norm", "att": "attn", "ffn": "ffn"}
_ATT_PROJ = {"receptance": "r_proj", "key": "k_proj", "value": "v_proj", "output": "o_proj", "ln_x": "g_norm"}
_TOP = {"emb.weight": "model.embeddings.weight", "ln_out.weight": "model.norm.weight",
        "ln_out.bias": "model.norm.bias", "head.weight": "lm_head.weight"}
_LORA_SUFFIX = {"0": "2.bias", "1": "0.weight", "2": "2.weight"}


# ---- name and tensor conversion ------------------------------------------------------------------------------------
def blinkdl_to_hf(name: str, t: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """One BlinkDL tensor -> its fla name and layout (None for tensors fla drops)."""
    if name in _TOP:
        return _TOP[name], t
    m = re.fullmatch(r"blocks\.(\d+)\.(ln0|ln1|ln2|att|ffn)\.(.+)", name)
    if m is None:
        raise KeyError(name)
    layer, part, rest = m.groups()
    prefix = f"model.layers.{layer}.{_LAYER_PARTS[part]}"
    if part == "att":
        lora = re.fullmatch(r"([wavg])([012])", rest)
        if lora:
            if layer == "0" and lora.group(1) == "v":
                return None
            kind, num = lora.groups()
            t = t.reshape(-1) if num == "0" else t.t()
            return f"{prefix}.{kind}_lora.lora.{_LORA_SUFFIX[num]}", t
        head, _, tail = rest.partition(".")
        if head in _ATT_PROJ:
            return f"{prefix}.{_ATT_PROJ[head]}.{tail}", t
        if rest in ("k_k", "k_a"):
            return f"{prefix}.{rest}", t.reshape(-1)
        return f"{prefix}.{rest}", t
    if part == "ffn" and rest == "x_k":
        return f"{prefix}.x_k", t.reshape(-1)
    return f"{prefix}.{rest}", t


def hf_to_blinkdl(name: str, t: torch.Tensor) -> tuple[str, torch.Tensor]:
    """One fla tensor -> its BlinkDL name and layout."""
    rev_top = {v: k for k, v in _TOP.items()}
    if name in rev_top:
        return rev_top[name], t
    m = re.fullmatch(r"model\.layers\.(\d+)\.(pre_norm|attn_norm|ffn_norm|attn|ffn)\.(.+)", name)
    if m is None:
        raise KeyError(name)
    layer, part, rest = m.groups()
    part = {v: k for k, v in _LAYER_PARTS.items()}[part]
    prefix = f"blocks.{layer}.{part}"
    if part == "att":
        lora = re.fullmatch(r"([wavg])_lora\.lora\.(0\.weight|2\.weight|2\.bias)", rest)
        if lora:
            kind, suffix = lora.groups()
            num = {v: k for k, v in _LORA_SUFFIX.items()}[suffix]
            t = t.reshape(1, 1, -1) if num == "0" else t.t()
            return f"{prefix}.{kind}{num}", t
        head, _, tail = rest.partition(".")
        rev_proj = {v: k for k, v in _ATT_PROJ.items()}
        if head in rev_proj:
            return f"{prefix}.{rev_proj[head]}.{tail}", t
        if rest in ("k_k", "k_a") or rest.startswith("x_"):
            return f"{prefix}.{rest}", t.reshape(1, 1, -1)
        return f"{prefix}.{rest}", t
    if part == "ffn" and rest == "x_k":
        return f"{prefix}.x_k", t.reshape(1, 1, -1)
    return f"{prefix}.{rest}", t


# ---- reading ---------------------------------------------------------------------------------------------------------
def _read_hf_folder(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {folder} (expected model.safetensors or a sharded index)")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(folder / f)))
    out = {}
    unknown = []
    for name, t in sd.items():
        try:
            bname, bt = hf_to_blinkdl(name, t)
        except KeyError:
            unknown.append(name)
            continue
        out[bname] = bt
    if unknown:
        raise ValueError(f"{folder}: unknown tensors for RWKV-7 x070 (not loadable): {sorted(unknown)}")
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a BlinkDL ``.pth`` or an fla/HF folder, in BlinkDL names and layouts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"RWKV-7 checkpoint not found: {path} (a BlinkDL .pth file or an fla/HF folder)")
    if path.is_dir():
        return _read_hf_folder(path)
    sd = read_checkpoint(path, what="backbone checkpoint", mmap=True)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} is not a plain state dict of tensors (a BlinkDL RWKV-7 .pth)")
    return sd


def infer_config(sd: dict[str, torch.Tensor]) -> RWKV7Config:
    """Layers, width, heads, LoRA ranks and FFN width from tensor shapes."""
    if "emb.weight" not in sd:
        raise ValueError("not an RWKV-7 checkpoint: no emb.weight / model.embeddings.weight")
    vocab, C = sd["emb.weight"].shape
    n_layer = 0
    while f"blocks.{n_layer}.ln1.weight" in sd:
        n_layer += 1
    if n_layer == 0:
        raise ValueError("not an RWKV-7 checkpoint: no blocks.*.ln1.weight")
    att = "blocks.0.att."
    v_src = "blocks.1.att.v1" if n_layer > 1 else "blocks.0.att.v1"
    return RWKV7Config(
        n_layer=n_layer, n_embd=C, head_size=sd[att + "r_k"].shape[1], vocab_size=vocab,
        dim_w_lora=sd[att + "w1"].shape[1], dim_a_lora=sd[att + "a1"].shape[1],
        dim_v_lora=sd[v_src].shape[1] if v_src in sd else 32, dim_g_lora=sd[att + "g1"].shape[1],
        dim_ffn=sd["blocks.0.ffn.key.weight"].shape[0])


def load_checkpoint(cls, path, dtype=torch.float32, device="cpu", **model_kwargs):
    """Build the model from the file's shapes and load its tensors; unknown or missing keys are a clear error."""
    sd = read_state_dict(path)
    cfg = infer_config(sd)
    with torch.device("meta"):
        model = cls(cfg, **model_kwargs)
    expected = model.state_dict()
    unknown = sorted(set(sd) - set(expected))
    missing = sorted(set(expected) - set(sd) - OPTIONAL_KEYS)
    if unknown or missing:
        msg = [f"{path}: does not match the RWKV-7 x070 structure inferred from it ({cfg})."]
        if unknown:
            msg.append(f"Unknown tensors (e.g. DeepEmbed extras, not supported): {unknown}")
        if missing:
            msg.append(f"Missing tensors: {missing}")
        raise ValueError(" ".join(msg))
    wrong = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sd if tuple(sd[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ValueError(f"{path}: tensor shapes do not fit one RWKV-7 model: {wrong}")
    full = {}
    for k, meta in expected.items():
        if k in sd:
            full[k] = sd[k].to(device=device, dtype=dtype)
        else:  # an optional unused tensor: zeros of the right shape
            full[k] = torch.zeros(meta.shape, device=device, dtype=dtype)
    model.load_state_dict(full, assign=True)
    return model


# ---- writing ---------------------------------------------------------------------------------------------------------
def hf_config(cfg: RWKV7Config) -> dict:
    """An fla ``config.json`` for this size (model_type rwkv7)."""
    return {
        "model_type": "rwkv7", "architectures": ["RWKV7ForCausalLM"], "attn_mode": "chunk",
        "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer, "head_dim": cfg.head_size,
        "num_heads": cfg.n_head, "decay_low_rank_dim": cfg.dim_w_lora, "a_low_rank_dim": cfg.dim_a_lora,
        "v_low_rank_dim": cfg.dim_v_lora, "gate_low_rank_dim": cfg.dim_g_lora, "intermediate_size": cfg.dim_ffn,
        "hidden_ratio": cfg.dim_ffn / cfg.n_embd, "vocab_size": cfg.vocab_size, "norm_eps": 1e-5,
        "value_dim": [cfg.n_embd] * cfg.n_layer, "tie_word_embeddings": False,
    }


def save_checkpoint(model, path, format: str = "blinkdl") -> None:
    """Write the model as a BlinkDL ``.pth`` (one file) or an fla/HF folder (config.json + model.safetensors)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    if format == "blinkdl":
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd, path)
    elif format == "hf":
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        out = {}
        for k, t in sd.items():
            conv = blinkdl_to_hf(k, t)
            if conv is not None:
                out[conv[0]] = conv[1].contiguous()
        save_file(out, str(path / "model.safetensors"), metadata={"format": "pt"})
        (path / "config.json").write_text(json.dumps(hf_config(model.config), indent=2))
    else:
        raise ValueError(f"unknown checkpoint format {format!r}; use 'blinkdl' or 'hf'")
