"""Speech encoder: WavLM (transformers' WavLMModel) over 16 kHz mono waveforms, 50 Hz features.

Two checkpoint formats load, both without unpickling code:
- the Hugging Face folder (`config.json` + `model.safetensors` or `pytorch_model.bin`), as microsoft/wavlm-large and
  microsoft/wavlm-base-plus publish it;
- the UniLM release (`WavLM-Large.pt`, `WavLM-Base+.pt`: {"cfg": dict, "model": state dict}), its config and keys
  mapped onto transformers' names (the mapping of transformers' own conversion script).

Features are the last hidden state (the paper's code takes `last_hidden_state`), or hidden state `layer` if given.
Input normalisation follows the checkpoint: UniLM's `cfg["normalize"]` (True for Large, False for Base+), or the HF
folder's preprocessor_config.json `do_normalize`; without either, the size's default.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..safe_load import CheckpointError, read_checkpoint
from ..weights import WeightFileMissing
from .audio import check_waveform
from .base import ModalityEncoder

SAMPLE_RATE = 16000

# transformers WavLMConfig fields of each size (the public checkpoints' config.json values; tiny: CPU stand-ins that
# keep the real convolution stack, so 50 Hz features, and the two layer-norm layouts)
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=32,
             max_bucket_distance=80)
WAVLM_CONFIGS: dict[str, dict] = {
    "wavlm-base-plus": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                            feat_extract_norm="group", do_stable_layer_norm=False, num_buckets=320,
                            max_bucket_distance=800),
    "wavlm-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                        feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=320,
                        max_bucket_distance=800),
    "tiny-wavlm-base-plus": dict(_TINY, feat_extract_norm="group", do_stable_layer_norm=False),
    "tiny-wavlm-large": dict(_TINY, feat_extract_norm="layer", do_stable_layer_norm=True),
}
# UniLM pretraining normalised the waveform for Large only
WAVLM_NORMALIZE = {"wavlm-base-plus": False, "wavlm-large": True, "tiny-wavlm-base-plus": False,
                   "tiny-wavlm-large": True}
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# head / pretraining-only tensors a checkpoint may carry besides the encoder
_IGNORED = re.compile(r"^(lm_head|projector|classifier|label_embs_concat|final_proj|project_q|quantizer)\b")


def _wavlm_config(fields: dict):
    from transformers import WavLMConfig

    # from_dict: a published config.json's legacy fields (torch_dtype, gradient_checkpointing, ...) are handled as
    # transformers does. No spec-augment masking or layer drop, even if a parent module puts the encoder in train mode.
    return WavLMConfig.from_dict({**fields, "apply_spec_augment": False, "layerdrop": 0.0})


# -- UniLM .pt ------------------------------------------------------------------------------------------------------
def _eval_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """UniLM's `conv_feature_layers` string, e.g. "[(512,10,5)] + [(512,3,2)] * 4", evaluated without eval():
    list/tuple/int literals joined by + and *."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"unsupported conv_feature_layers expression: {spec!r}")

    return [tuple(t) for t in ev(ast.parse(spec, mode="eval"))]


def unilm_config(cfg: dict) -> tuple[dict, bool]:
    """UniLM WavLMConfig dict -> (transformers WavLMConfig fields, normalize-the-waveform flag)."""
    if not cfg.get("relative_position_embedding", True) or not cfg.get("gru_rel_pos", True):
        raise ValueError("WavLM checkpoint without gated relative position bias: transformers' WavLM needs "
                         "relative_position_embedding=True and gru_rel_pos=True (all released WavLM models have them)")
    convs = _eval_conv_layers(cfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"))
    layer_norm = cfg.get("extractor_mode", "default") == "layer_norm"
    fields = dict(
        hidden_size=cfg.get("encoder_embed_dim", 768), num_hidden_layers=cfg.get("encoder_layers", 12),
        num_attention_heads=cfg.get("encoder_attention_heads", 12),
        intermediate_size=cfg.get("encoder_ffn_embed_dim", 3072), hidden_act=cfg.get("activation_fn", "gelu"),
        do_stable_layer_norm=bool(cfg.get("layer_norm_first", False)),
        feat_extract_norm="layer" if layer_norm else "group", conv_bias=bool(cfg.get("conv_bias", False)),
        conv_dim=tuple(c[0] for c in convs), conv_kernel=tuple(c[1] for c in convs),
        conv_stride=tuple(c[2] for c in convs), num_conv_pos_embeddings=cfg.get("conv_pos", 128),
        num_conv_pos_embedding_groups=cfg.get("conv_pos_groups", 16), num_buckets=cfg.get("num_buckets", 320),
        max_bucket_distance=cfg.get("max_distance", 1280),
    )
    return fields, bool(cfg.get("normalize", False))


_UNILM_LAYER = [("self_attn.grep_a", "attention.gru_rel_pos_const"),
                ("self_attn.grep_linear.", "attention.gru_rel_pos_linear."),
                ("self_attn.relative_attention_bias.", "attention.rel_attn_embed."),
                ("self_attn.", "attention."), ("self_attn_layer_norm.", "layer_norm."),
                ("fc1.", "feed_forward.intermediate_dense."), ("fc2.", "feed_forward.output_dense."),
                ("final_layer_norm.", "final_layer_norm.")]


def unilm_key(key: str) -> str | None:
    """One UniLM WavLM state-dict key -> transformers' name (None: a pretraining-only tensor, not loaded).
    Weight-norm halves are named weight_g / weight_v here (see `_weight_norm_names`)."""
    if _IGNORED.match(key):
        return None
    if key == "mask_emb":
        return "masked_spec_embed"
    m = re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.(0|2|2\.1)\.(weight|bias)", key)
    if m:  # (conv, dropout, norm, GELU): the norm is a GroupNorm (layer 0) or (Transpose, LayerNorm, Transpose)
        part = "conv" if m.group(2) == "0" else "layer_norm"
        return f"feature_extractor.conv_layers.{m.group(1)}.{part}.{m.group(3)}"
    if key.startswith("layer_norm."):
        return "feature_projection." + key
    if key.startswith("post_extract_proj."):
        return key.replace("post_extract_proj.", "feature_projection.projection.")
    if key.startswith("encoder.pos_conv.0."):
        return key.replace("encoder.pos_conv.0.", "encoder.pos_conv_embed.conv.")
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key)
    if m:
        rest = m.group(2)
        for old, new in _UNILM_LAYER:
            if rest.startswith(old):
                return f"encoder.layers.{m.group(1)}.{new}{rest[len(old):]}"
    if key.startswith("encoder.layer_norm."):
        return key
    raise KeyError(key)


def _weight_norm_names(state: dict, model_keys: set[str]) -> dict:
    """weight_g / weight_v (old weight_norm) <-> parametrizations.weight.original0 / 1, whichever the model uses."""
    pairs = [("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1")]
    out = {}
    for k, v in state.items():
        for old, new in pairs:
            if k.endswith(old) and k not in model_keys and k[: -len(old)] + new in model_keys:
                k = k[: -len(old)] + new
            elif k.endswith(new) and k not in model_keys and k[: -len(new)] + old in model_keys:
                k = k[: -len(new)] + old
        out[k] = v
    return out


def load_unilm_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], bool]:
    """Read a UniLM WavLM .pt ({"cfg", "model"}) with weights_only=True -> (HF config fields, HF state dict,
    normalize flag). A file that needs code unpickled to load is refused with how to convert it."""
    try:
        ckpt = read_checkpoint(path, what="WavLM weights")
    except CheckpointError as e:
        if "refused to load" not in str(e):
            raise
        raise CheckpointError(
            f"{path} cannot be read weights-only (it pickles Python objects); either use the Hugging Face folder "
            "(config.json + model.safetensors / pytorch_model.bin, as microsoft/wavlm-large publishes it), or, if "
            "you trust the file, re-save it as plain data once where the UniLM code is installed: "
            "torch.save({'cfg': dict(ckpt['cfg']), 'model': dict(ckpt['model'])}, 'WavLM-Large.plain.pt')") from None
    if not isinstance(ckpt, dict) or "cfg" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a UniLM WavLM checkpoint (expected a dict with 'cfg' and 'model')")
    fields, normalize = unilm_config(dict(ckpt["cfg"]))
    state = {}
    for k, v in ckpt["model"].items():
        try:
            new = unilm_key(k)
        except KeyError:
            raise ValueError(f"{path}: unexpected tensor {k!r} for a WavLM encoder") from None
        if new is not None:
            state[new] = v
    return fields, state, normalize


# -- Hugging Face folder ----------------------------------------------------------------------------------------
def load_hf_folder(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], bool | None]:
    """Read a Hugging Face WavLM folder -> (config fields, state dict, do_normalize or None if no preprocessor
    config). Weights: model.safetensors, else pytorch_model.bin read with weights_only=True."""
    folder = Path(folder)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise WeightFileMissing(f"WavLM folder {folder}: config.json is missing (the Hugging Face folder has "
                                "config.json beside model.safetensors / pytorch_model.bin)")
    fields = json.loads(cfg_file.read_text())
    if fields.get("model_type") != "wavlm":
        raise ValueError(f"{cfg_file}: model_type is {fields.get('model_type')!r}, not 'wavlm'")
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        state = read_checkpoint(folder / "pytorch_model.bin", what="WavLM weights")
    else:
        raise WeightFileMissing(f"WavLM folder {folder}: neither model.safetensors nor pytorch_model.bin is there")
    # a task model (WavLMForCTC, ...) keeps the encoder under "wavlm."
    if any(k.startswith("wavlm.") for k in state):
        state = {k[len("wavlm."):]: v for k, v in state.items() if k.startswith("wavlm.")}
    state = {k: v for k, v in state.items() if not _IGNORED.match(k)}
    pre = folder / "preprocessor_config.json"
    normalize = json.loads(pre.read_text()).get("do_normalize") if pre.is_file() else None
    keep = {k: v for k, v in fields.items() if not k.startswith("_") and k not in ("architectures", "model_type")}
    return keep, state, normalize


def load_wavlm(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], bool | None]:
    """A WavLM checkpoint in either format: a .pt file (UniLM), or a HF folder / a weight file or config.json in it."""
    path = Path(path)
    if path.is_file() and path.suffix in (".pt", ".pth"):
        return load_unilm_checkpoint(path)
    return load_hf_folder(path if path.is_dir() else path.parent)


# -- the encoder ------------------------------------------------------------------------------------------------
class WavLMEncoder(ModalityEncoder):
    """WavLM over 16 kHz audio: (B, S) waveforms -> (B, ~S / 320, hidden) features at 50 Hz.

    Args:
        config: transformers WavLMConfig fields (a `WAVLM_CONFIGS` entry); replaced by the checkpoint's when given,
            which must then agree in width and depth (guards against the wrong size's file).
        checkpoint: a UniLM .pt or a HF folder / file in it (see `load_wavlm`); None leaves the random init.
        normalize: per-utterance zero-mean unit-variance waveform; the checkpoint's flag wins when it has one.
        layer: None = the last hidden state (the paper's choice); k = hidden state k (0 = the CNN features).
        max_seconds: longer clips are cut to this (sets `num_tokens`).
    """

    modality = "audio"
    variable_length = True
    sample_rate = SAMPLE_RATE

    def __init__(self, config: dict | None = None, checkpoint: str | os.PathLike | None = None,
                 normalize: bool = False, layer: int | None = None, max_seconds: float = 30.0,
                 frozen: bool = True):
        super().__init__(frozen=frozen)
        from transformers import WavLMModel

        state = None
        if checkpoint is not None:
            fields, state, file_normalize = load_wavlm(checkpoint)
            if config is not None:
                want = (config["hidden_size"], config["num_hidden_layers"])
                got = (fields.get("hidden_size"), fields.get("num_hidden_layers"))
                if want != got:
                    raise ValueError(f"{checkpoint}: WavLM (width, layers) {got} differ from the expected {want} "
                                     "(wrong WavLM size for this encoder name?)")
            config = fields
            normalize = normalize if file_normalize is None else file_normalize
        if config is None:
            raise ValueError("WavLMEncoder needs a config or a checkpoint")
        self.model = WavLMModel(_wavlm_config(config))
        if state is not None:
            model_keys = set(self.model.state_dict())
            missing, unexpected = self.model.load_state_dict(_weight_norm_names(state, model_keys), strict=False)
            if missing or unexpected:
                raise ValueError(f"{checkpoint}: WavLM weights do not match the config (missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]})")
        cfg = self.model.config
        if layer is not None and not -cfg.num_hidden_layers - 1 <= layer <= cfg.num_hidden_layers:
            raise ValueError(f"layer={layer} out of range for a {cfg.num_hidden_layers}-layer WavLM")
        self.normalize = bool(normalize)
        self.layer = layer
        # the layer-norm feature extractor (Large) takes a padding mask; the group-norm one (Base+) is trained on
        # zero-padded batches without one, as transformers documents
        self.use_mask = cfg.feat_extract_norm == "layer"
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.min_samples = self._samples_for(1)
        self.out_dim = cfg.hidden_size
        self.num_tokens = self._frames(self.max_samples)
        self.set_frozen(frozen)

    def _frames(self, samples: int) -> int:
        """Features of a clip of `samples` samples: each conv gives floor((L - kernel) / stride) + 1."""
        n = samples
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            n = (n - k) // s + 1
        return n

    def _samples_for(self, frames: int) -> int:
        """The fewest samples that give `frames` features (the inverse of `_frames`)."""
        n = frames
        for k, s in reversed(list(zip(self.model.config.conv_kernel, self.model.config.conv_stride))):
            n = (n - 1) * s + k
        return n

    def _check(self, raw) -> np.ndarray:
        return check_waveform(raw)[: self.max_samples]

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        """16 kHz float array [S] -> waveform [S'] (cut to max_seconds, normalised if the checkpoint was trained so,
        zero-padded to the 400 samples of one feature frame)."""
        audio = self._check(raw)
        if self.normalize:
            audio = (audio - audio.mean()) / math.sqrt(float(audio.var()) + 1e-7)
        if len(audio) < self.min_samples:
            audio = np.pad(audio, (0, self.min_samples - len(audio)))
        return torch.from_numpy(audio.astype(np.float32))

    def feature_length(self, raw: np.ndarray) -> int:
        """Features covering the clip: the convolution stack's output length (about samples / 320)."""
        return self._frames(max(len(self._check(raw)), self.min_samples))

    def collate(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Right zero-padding to the longest clip."""
        return nn.utils.rnn.pad_sequence(inputs, batch_first=True)  # (B, S_max)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) waveforms -> (B, L, D) features; `lengths` [B] are the valid feature counts."""
        mask = None
        if self.use_mask and lengths is not None:
            # a sample mask whose feature-level mask is exactly `lengths` (transformers only uses it for that)
            n = torch.as_tensor([self._samples_for(int(f)) for f in lengths.tolist()], device=x.device)
            mask = (torch.arange(x.shape[1], device=x.device)[None] < n[:, None]).long()  # (B, S)
        out = self.model(x.to(self.dtype), attention_mask=mask, output_hidden_states=self.layer is not None)
        return out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", normalize={self.normalize}, layer={self.layer}"
