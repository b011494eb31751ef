"""The chat template (RWKV World format) shared by training, evaluation and generation.

    user turn:       "\\x16User: {text}\\x17"          modality tag in text -> N placeholder ids (65535)
                                                    (each modality's tag is in the registry, modrwkv.modalities)
    assistant turn:  "\\x16Assistant: {text}\\x17"     labels: the answer tokens and the closing 24

Every piece is tokenised on its own ("\\x16User: " + text before the tag | placeholders | text after the tag |
24 | "\\x16Assistant:" | " " + answer | 24), so a generation prompt ending in "\\x16Assistant:" is token for token the
prefix training saw, and the model's first generated token is the answer's " word" token.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass

from modrwkv.modalities import data_modalities, find_modality, modality_tags

PLACEHOLDER_ID = 65535  # outside the World tokenizer's range (ids <= 65529); replaced by adapter outputs
IGNORE_INDEX = -100
TURN_START = 23  # "\x16"
TURN_END = 24  # "\x17": ends a turn and generation
USER_ROLES = ("user", "human")
ASSISTANT_ROLES = ("assistant", "gpt")


@dataclass
class Encoded:
    """A tokenised conversation: ids and labels of equal length, and where the placeholders start."""

    input_ids: list[int]
    labels: list[int]
    num_placeholders: int = 0


class ChatTemplate:
    """World-format chat template with modality placeholders and assistant-only labels.

    Args:
        tokenizer: anything with encode(str) -> list[int] and decode(list[int]) -> str (the World tokenizer).
        user: / assistant: the role names written into the prompt.
    """

    def __init__(self, tokenizer=None, user: str = "User", assistant: str = "Assistant"):
        if tokenizer is None:
            from modrwkv.backbone import WorldTokenizer

            tokenizer = WorldTokenizer()
        self.tokenizer = tokenizer
        self.user_prefix = f"\x16{user}: "
        self.assistant_prefix = f"\x16{assistant}:"
        self._assistant_prefix_ids = self._encode(self.assistant_prefix)
        self._user_prefix_ids = self._encode(self.user_prefix)

    def __getstate__(self) -> dict:
        # the World tokenizer wraps a Rust object that cannot be pickled: store its class and rebuild it, so a model
        # holding the template can be deep-copied, checkpointed or sent to spawned workers
        state = self.__dict__.copy()
        tok = state.pop("tokenizer")
        try:
            pickle.dumps(tok)
            state["tokenizer"] = tok
        except (TypeError, pickle.PicklingError, AttributeError):
            state["_tokenizer_cls"] = type(tok)
        return state

    def __setstate__(self, state: dict) -> None:
        cls = state.pop("_tokenizer_cls", None)
        if cls is not None:
            state["tokenizer"] = cls()
        self.__dict__.update(state)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text)) if text else []

    # -- pieces -----------------------------------------------------------------------------------------------
    def user_ids(self, text: str, modality: str | None = None, num_tokens: int = 0) -> tuple[list[int], int]:
        """One user turn -> (ids, index of the first placeholder or -1). The modality's tag in `text` becomes
        `num_tokens` placeholders; `modality` given and the tag absent: the tag is put first, followed by a newline."""
        if modality is None:
            for tag in modality_tags():
                if tag in text:
                    raise ValueError(f"user text has {tag} but the sample has no modality")
            return self._encode(self.user_prefix + text) + [TURN_END], -1
        tag = _tag(modality)
        count = text.count(tag)
        if count > 1:
            raise ValueError(f"user text has {count} {tag} tags; one modality input per sample is supported")
        if count == 0:
            text = f"{tag}\n{text}"
        before, after = text.split(tag)
        head = self._encode(self.user_prefix + before)
        return head + [PLACEHOLDER_ID] * num_tokens + self._encode(after) + [TURN_END], len(head)

    def assistant_prompt_ids(self) -> list[int]:
        """The generation prompt that opens an assistant turn: tokens of "\\x16Assistant:"."""
        return list(self._assistant_prefix_ids)

    def answer_ids(self, text: str) -> list[int]:
        """An assistant answer " {text}" and the closing 24 (the tokens that carry labels)."""
        return self._encode(" " + text) + [TURN_END]

    # -- whole conversations --------------------------------------------------------------------------------
    def encode(self, conversation: Sequence[dict], modality: str | None = None, num_tokens: int = 0,
               add_generation_prompt: bool = False) -> Encoded:
        """Tokenise a conversation [{"role", "content"}, ...] into ids and labels (-100 except assistant answers).

        The modality goes into the first user turn holding its tag (the first user turn if none does).
        With `add_generation_prompt` the conversation must end with a user turn, and "\\x16Assistant:" is appended.
        """
        _check_roles(conversation, add_generation_prompt)
        tag = _tag(modality) if modality is not None else None
        target = next((i for i, t in enumerate(conversation) if t["role"] in USER_ROLES and tag in t["content"]),
                      0) if tag else -1
        ids: list[int] = []
        labels: list[int] = []
        first_ph = -1
        for i, turn in enumerate(conversation):
            if turn["role"] in USER_ROLES:
                piece, ph = self.user_ids(turn["content"], modality if i == target else None,
                                          num_tokens if i == target else 0)
                if ph >= 0:
                    first_ph = len(ids) + ph
                ids += piece
                labels += [IGNORE_INDEX] * len(piece)
            else:
                ids += self._assistant_prefix_ids
                labels += [IGNORE_INDEX] * len(self._assistant_prefix_ids)
                ans = self.answer_ids(turn["content"])
                ids += ans
                labels += ans
        if add_generation_prompt:
            ids += self._assistant_prefix_ids
            labels += [IGNORE_INDEX] * len(self._assistant_prefix_ids)
        return Encoded(ids, labels, num_tokens if first_ph >= 0 else 0)

    def prompt_ids(self, conversation: Sequence[dict] | str, modality: str | None = None,
                   num_tokens: int = 0) -> list[int]:
        """Generation prompt: the conversation so far (ending with a user turn, or one user text) + "\\x16Assistant:".

        Identical to the prefix of the same conversation's training ids."""
        if isinstance(conversation, str):
            conversation = [{"role": "user", "content": conversation}]
        return self.encode(conversation, modality, num_tokens, add_generation_prompt=True).input_ids

    def cached_prompt_split(self, question: str, modality: str, num_tokens: int,
                            prompt_prefix: str = "") -> tuple[list[int], list[int]]:
        """The prompt for "{tag}{prompt_prefix}{question}" in two parts for prefix-state caching:
        (ids up to and including the placeholders and the shared prompt prefix, the question's ids to the end).

        The prefix and the question are tokenised separately (so a prefix is best ended at a word boundary, e.g. a
        newline); with an empty prefix the concatenation equals `prompt_ids(tag + question)` exactly.
        """
        head = self._user_prefix_ids + [PLACEHOLDER_ID] * num_tokens + self._encode(prompt_prefix)
        tail = self._encode(question) + [TURN_END] + self._assistant_prefix_ids
        return head, tail

    def decode_answer(self, ids: Sequence[int]) -> str:
        """Generated ids -> answer text: cut at the first 24, drop the single leading space of " {text}"."""
        ids = list(ids)
        if TURN_END in ids:
            ids = ids[: ids.index(TURN_END)]
        text = self.tokenizer.decode(ids)
        return text[1:] if text.startswith(" ") else text


def _tag(modality: str) -> str:
    """The chat tag of ``modality`` (the registry's, e.g. "<image>")."""
    spec = find_modality(modality)
    if spec is None or spec.tag is None:
        raise ValueError(f"unknown modality {modality!r}; expected one of {sorted(data_modalities())}")
    return spec.tag


def _check_roles(conversation: Sequence[dict], generation: bool) -> None:
    if not conversation:
        raise ValueError("empty conversation")
    for i, turn in enumerate(conversation):
        role = turn.get("role")
        if role not in USER_ROLES + ASSISTANT_ROLES or not isinstance(turn.get("content"), str):
            raise ValueError(f"turn {i}: expected {{'role': user|assistant, 'content': str}}, got {turn!r}")
        want_user = i % 2 == 0
        if (role in USER_ROLES) != want_user:
            raise ValueError(f"turn {i}: roles must alternate user, assistant, ... starting with user")
    last_user = conversation[-1]["role"] in USER_ROLES
    if generation and not last_user:
        raise ValueError("a generation prompt must end with a user turn")
    if not generation and last_user:
        raise ValueError("a training conversation must end with an assistant turn")
