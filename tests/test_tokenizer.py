"""The World tokenizer: the reference test vector and round trips."""

import random

from modrwkv.backbone import WorldTokenizer

TEXT = "Today is a beautiful day. 今天是美好的一天。"
IDS = [33520, 4600, 332, 59219, 21509, 47, 33, 10381, 11639, 13091, 15597, 11685, 14734, 10250, 11639, 10080]


def test_reference_vector():
    tok = WorldTokenizer()
    assert tok.encode(TEXT) == IDS
    assert tok.decode(IDS) == TEXT


def test_chat_control_tokens():
    tok = WorldTokenizer()
    assert tok.encode("\x16") == [23] and tok.encode("\x17") == [24]


def test_round_trip_random_unicode():
    tok = WorldTokenizer()
    rng = random.Random(0)
    ranges = [(0x20, 0x7E), (0xA0, 0x2FF), (0x400, 0x4FF), (0x4E00, 0x9FFF), (0x1F300, 0x1F6FF), (0x0, 0x1F)]
    for _ in range(200):
        text = "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(0, 40)))
        assert tok.decode(tok.encode(text)) == text


def test_round_trip_arbitrary_valid_utf8_bytes():
    tok = WorldTokenizer()
    rng = random.Random(1)
    for _ in range(200):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        text = raw.decode("utf-8", errors="ignore")  # keep what is valid UTF-8
        assert tok.decode_bytes(tok.encode(text)) == text.encode("utf-8")


def test_ids_below_vocab_size():
    tok = WorldTokenizer()
    ids = tok.encode("".join(chr(c) for c in range(32, 2000)))
    assert all(0 < i < 65530 for i in ids)


def test_pickles_for_dataloader_workers():
    import pickle

    tok = pickle.loads(pickle.dumps(WorldTokenizer()))
    assert tok.encode(TEXT) == IDS
