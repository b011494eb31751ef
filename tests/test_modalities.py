"""The modality registry: one canonical name per modality, aliases resolved, every data modality complete."""

from __future__ import annotations

import numpy as np
import pytest

from modrwkv.data.chat import ChatTemplate
from modrwkv.data.schema import make_sample
from modrwkv.data.shards import decode_record, encode_sample, json_bytes
from modrwkv.modalities import MODALITIES, canonical_name, data_modalities, get_modality, modality_tags


def test_aliases_resolve_to_one_canonical_name():
    assert canonical_name("vision") == canonical_name("image") == "image"
    assert canonical_name("timeseries") == canonical_name("series") == "series"
    assert get_modality("vision") is get_modality("image")
    names = [n for s in MODALITIES.values() for n in (s.name, *s.aliases)]
    assert len(names) == len(set(names))  # no name belongs to two modalities
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        get_modality("video")


def test_every_data_modality_is_complete():
    assert data_modalities() == ("image", "audio", "series")
    assert modality_tags() == ("<image>", "<audio>", "<series>")
    for name in data_modalities():
        spec = get_modality(name)
        assert spec.codec() is not None and spec.offline is not None and spec.max_new_tokens > 0
        assert spec.generative and set(spec.metrics()) and spec.main_metric in spec.report_metrics
    assert not get_modality("text").generative and get_modality("text").tag is None


def test_an_alias_in_data_is_read_as_the_canonical_name():
    sample = make_sample("k", "timeseries", [1.0, 2.0], [{"role": "user", "content": "?"},
                                                        {"role": "assistant", "content": "3"}])
    assert sample["modality"] == "series" and sample["series"].dtype == np.float32
    record = encode_sample(sample)
    record["json"] = json_bytes("timeseries", sample["conversation"], sample["meta"])  # an older file's name
    back = decode_record(record)
    assert back["modality"] == "series" and np.array_equal(back["series"], sample["series"])


class _Chars:
    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_chat_tags_come_from_the_registry():
    template = ChatTemplate(_Chars())
    conv = [{"role": "user", "content": "<series>\nnext?"}, {"role": "assistant", "content": "1"}]
    assert template.encode(conv, "timeseries", 3).input_ids == template.encode(conv, "series", 3).input_ids
    with pytest.raises(ValueError, match="unknown modality 'text'"):
        template.encode(conv, "text", 3)
