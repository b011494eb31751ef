"""Chat template: World format, placeholders, assistant-only labels (checked on decoded text), and generation prompts
that are token for token the prefixes training sees."""

from __future__ import annotations

import pytest

from modrwkv.backbone import WorldTokenizer
from modrwkv.data.chat import IGNORE_INDEX, PLACEHOLDER_ID, TURN_END, ChatTemplate

TOK = WorldTokenizer()
T = ChatTemplate(TOK)

CONV = [
    {"role": "user", "content": "<image>\nWhat colour is the circle?"},
    {"role": "assistant", "content": "red"},
    {"role": "user", "content": "And the square?"},
    {"role": "assistant", "content": "It is blue."},
]


def _text(ids):
    return TOK.decode([i for i in ids if i != PLACEHOLDER_ID])


def test_world_format_and_placeholders():
    enc = T.encode(CONV, "image", num_tokens=5)
    ids = enc.input_ids
    assert ids.count(PLACEHOLDER_ID) == 5 == enc.num_placeholders
    start = ids.index(PLACEHOLDER_ID)
    assert ids[start:start + 5] == [PLACEHOLDER_ID] * 5
    assert TOK.decode(ids[:start]) == "\x16User: "
    assert _text(ids) == ("\x16User: \nWhat colour is the circle?\x17\x16Assistant: red\x17"
                          "\x16User: And the square?\x17\x16Assistant: It is blue.\x17")
    assert ids[0] == 23 and ids[-1] == TURN_END


def test_labels_cover_exactly_the_assistant_answers():
    enc = T.encode(CONV, "image", num_tokens=3)
    assert len(enc.labels) == len(enc.input_ids)
    labelled = [i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
    assert all(lab in (IGNORE_INDEX, i) for i, lab in zip(enc.input_ids, enc.labels))
    assert TOK.decode(labelled) == " red\x17 It is blue.\x17"
    unlabelled = [i for i, lab in zip(enc.input_ids, enc.labels) if lab == IGNORE_INDEX]
    assert _text(unlabelled) == ("\x16User: \nWhat colour is the circle?\x17\x16Assistant:"
                                 "\x16User: And the square?\x17\x16Assistant:")


def test_tag_is_prepended_when_absent_and_placed_where_written():
    conv = [{"role": "user", "content": "Describe it."}, {"role": "assistant", "content": "A dog."}]
    ids = T.encode(conv, "audio", 2).input_ids
    assert _text(ids).startswith("\x16User: \nDescribe it.\x17")
    assert TOK.decode(ids[: ids.index(PLACEHOLDER_ID)]) == "\x16User: "
    conv = [{"role": "user", "content": "Listen: <audio> What word?"}, {"role": "assistant", "content": "cat"}]
    ids = T.encode(conv, "audio", 2).input_ids
    assert TOK.decode(ids[: ids.index(PLACEHOLDER_ID)]) == "\x16User: Listen: "
    # the tag in a later turn is honoured (the modality goes there, not to the first turn)
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "<series>Next?"}, {"role": "assistant", "content": "1 2"}]
    ids = T.encode(conv, "series", 4).input_ids
    assert TOK.decode(ids[: ids.index(PLACEHOLDER_ID)]).endswith("\x16Assistant: Hello\x17\x16User: ")


def test_generation_prompt_is_the_training_prefix():
    for n in (0, 4):
        train = T.encode(CONV, "image", n).input_ids
        prompt = T.prompt_ids(CONV[:1], "image", n)
        assert train[: len(prompt)] == prompt
        assert TOK.decode(prompt[-4:]) == "\x16Assistant:"
        # the next training token is the answer's own " red" token: generation continues the same tokenisation
        assert TOK.decode([train[len(prompt)]]) == " red"
        multi = T.prompt_ids(CONV[:3], "image", n)
        assert train[: len(multi)] == multi
    assert T.prompt_ids("<image>\nWhat colour is the circle?", "image", 4) == T.prompt_ids(CONV[:1], "image", 4)


def test_cached_prompt_split_concatenates_to_the_prompt():
    head, tail = T.cached_prompt_split("\nWhat colour is the circle?", "image", 6)
    assert head + tail == T.prompt_ids(CONV[:1], "image", 6)
    assert head[-1] == PLACEHOLDER_ID
    head, tail = T.cached_prompt_split("Is it round?", "image", 2, prompt_prefix="Look closely.\n")
    assert _text(head + tail) == "\x16User: Look closely.\nIs it round?\x17\x16Assistant:"


def test_decode_answer_stops_at_turn_end():
    ids = TOK.encode(" It is blue.") + [TURN_END] + TOK.encode("garbage")
    assert T.decode_answer(ids) == "It is blue."
    assert T.decode_answer(TOK.encode(" no end")) == "no end"


@pytest.mark.parametrize("conv,err", [
    ([], "empty"),
    ([{"role": "assistant", "content": "x"}], "alternate"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
    ([{"role": "user", "content": "a"}], "end with an assistant"),
    ([{"role": "user", "content": "<image><image>"}, {"role": "assistant", "content": "b"}], "2 <image> tags"),
    ([{"role": "system", "content": "a"}], "expected"),
])
def test_malformed_conversations_are_clear_errors(conv, err):
    with pytest.raises(ValueError, match=err):
        T.encode(conv, "image", 2)


def test_unknown_modality_and_stray_tag():
    with pytest.raises(ValueError, match="unknown modality"):
        T.encode(CONV, "video", 2)
    with pytest.raises(ValueError, match="no modality"):
        T.encode(CONV, None)


def test_template_survives_pickling_and_deepcopy():
    import copy
    import pickle

    for clone in (copy.deepcopy(T), pickle.loads(pickle.dumps(T))):
        assert clone.encode(CONV, "image", 3).input_ids == T.encode(CONV, "image", 3).input_ids
