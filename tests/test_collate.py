"""PackedCollate: one packed row per batch, placeholder counts from encoder + adapter, corrupt samples skipped and
counted, max_tokens enforced with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modrwkv.adapters import build_adapter
from modrwkv.backbone import WorldTokenizer
from modrwkv.data.chat import IGNORE_INDEX, PLACEHOLDER_ID, ChatTemplate
from modrwkv.data.collate import BatchTooLongError, PackedCollate
from modrwkv.data.skips import SkipCounter, TooManySkipsError
from modrwkv.encoders import build_encoder

TEMPLATE = ChatTemplate(WorldTokenizer())


def _sample(modality, data, key="k", question="What is it?", answer="a thing"):
    return {"__key__": key, "modality": modality, modality: data,
            "conversation": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "meta": {"answer": answer}}


def test_audio_batch_is_packed_with_per_sample_token_counts():
    enc = build_encoder("tiny-whisper")
    ad = build_adapter("audio_conv", enc.out_dim, 32)
    clips = [np.zeros(16000, np.float32), np.zeros(4000, np.float32) + 0.01]
    batch = PackedCollate(TEMPLATE, enc, ad)([_sample("audio", c, key=str(i)) for i, c in enumerate(clips)])
    assert batch["modality_inputs"].shape == (2, 80, 3000)
    assert batch["modality_lengths"].tolist() == [50, 13]  # ceil(S / 320)
    ids, cu = batch["input_ids"][0], batch["cu_seqlens"]
    assert cu.dtype == torch.int32 and cu[0] == 0 and cu[-1] == ids.numel() and batch["labels"].shape == (1, len(ids))
    for i, n_feat in enumerate((50, 13)):
        seq = ids[cu[i]:cu[i + 1]]
        assert int((seq == PLACEHOLDER_ID).sum()) == ad.output_length(n_feat)  # floor((L + 4 - 3) / 2) + 1
        assert seq[0] == 23  # every sequence starts a user turn
    assert batch["keys"] == ["0", "1"] and batch["num_skipped"] == 0 and batch["meta"][1] == {"answer": "a thing"}


def test_image_batch_has_no_lengths_and_labels_only_answers():
    enc = build_encoder("tiny-siglip")
    ad = build_adapter("conv", enc.out_dim, 32, kernel_size=3, stride=2)
    img = Image.new("RGB", (20, 20), (255, 0, 0))
    batch = PackedCollate(TEMPLATE, enc, ad)([_sample("image", img, answer="red"), _sample("image", img, answer="x")])
    assert batch["modality_lengths"] is None and batch["modality_inputs"].shape == (2, 3, 32, 32)
    assert int((batch["input_ids"] == PLACEHOLDER_ID).sum()) == 2 * ad.output_length(16)
    labels = batch["labels"][0]
    assert TEMPLATE.tokenizer.decode(labels[labels != IGNORE_INDEX].tolist()) == " red\x17 x\x17"


def test_series_batch_pads_and_reports_token_counts():
    enc = build_encoder("tiny-wavenet")
    batch = PackedCollate(TEMPLATE, enc, build_adapter("mlp", enc.out_dim, 32))(
        [_sample("series", np.arange(50, dtype=np.float32)), _sample("series", np.ones(16, np.float32))])
    assert batch["modality_inputs"].shape == (2, 56) and batch["modality_lengths"].tolist() == [7, 2]
    assert int((batch["input_ids"] == PLACEHOLDER_ID).sum()) == 9


def test_corrupt_samples_are_skipped_and_counted():
    enc = build_encoder("tiny-whisper")
    counter = SkipCounter(max_skips=2, max_fraction=None, name="train")
    collate = PackedCollate(TEMPLATE, enc, None, skip_counter=counter)
    good = _sample("audio", np.zeros(800, np.float32), key="good")
    bad = [_sample("audio", np.zeros(0, np.float32), key="empty"),
           _sample("audio", np.full(10, np.nan, np.float32), key="nan")]
    malformed = dict(good, __key__="noanswer", conversation=[{"role": "user", "content": "hi"}])
    batch = collate([bad[0], good, malformed])
    assert batch["keys"] == ["good"] and batch["num_skipped"] == 2 and batch["cu_seqlens"].tolist()[0] == 0
    assert collate.num_skipped == 2 and counter.skipped == 2
    with pytest.raises(TooManySkipsError):  # the third skip passes the counter's limit of 2
        collate([bad[1]])


def test_all_corrupt_batch_is_none_without_counter():
    collate = PackedCollate(TEMPLATE, build_encoder("tiny-wavenet"))
    assert collate([_sample("series", np.full(5, np.nan))]) is None
    assert collate.num_skipped == 1 and collate.skip_reasons["ValueError"] == 1


def test_max_tokens_and_wrong_modality_are_clear_errors():
    enc = build_encoder("tiny-clip")
    img = Image.new("RGB", (8, 8))
    collate = PackedCollate(TEMPLATE, enc, None, max_tokens=60)
    one = collate([_sample("image", img)])
    n = one["input_ids"].shape[1]
    assert n <= 60
    with pytest.raises(BatchTooLongError, match="max_tokens=60"):
        collate([_sample("image", img), _sample("image", img)])
    with pytest.raises(BatchTooLongError, match="alone"):
        PackedCollate(TEMPLATE, enc, None, max_tokens=n - 1)([_sample("image", img, key="big")])
    with pytest.raises(ValueError, match="encoder expects 'image'"):
        collate([_sample("audio", np.zeros(100, np.float32))])
