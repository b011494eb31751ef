"""Spoken words and digits synthesised with espeak-ng: a small offline ASR task.

Each utterance is 1..``max_words`` words from the vocabulary, each word spoken separately (so the per-word clips
cache well) in a random voice, speed and pitch, joined by short random pauses, with a random gain and a little noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from modrwkv.data.espeak import synthesize, trim_silence
from modrwkv.data.schema import SAMPLE_RATE, make_sample

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # the Speech Commands words
VOICES = ("en-us", "en-us+f3", "en-gb", "en-gb+m3", "en-gb-scotland+f2", "en-029+m5")
PROMPT = "<audio>\nTranscribe the audio."


@dataclass(frozen=True)
class SpokenWordsConfig:
    """Vocabulary, utterance length and the voice/speed/pitch grid (a grid keeps the clip cache small)."""

    words: tuple[str, ...] = DIGITS
    min_words: int = 1
    max_words: int = 1
    voices: tuple[str, ...] = VOICES
    speeds: tuple[int, ...] = (130, 165, 200)
    pitches: tuple[int, ...] = (35, 50, 65)
    pause_s: tuple[float, float] = (0.05, 0.25)  # silence between words and around the utterance
    noise: float = 0.003  # std of added white noise
    gain: tuple[float, float] = (0.5, 1.0)  # the peak is scaled to a value in this range

    @staticmethod
    def preset(name: str = "digits", **overrides) -> SpokenWordsConfig:
        """``digits`` (one digit word), ``commands`` (one command word) or ``sequences`` (1-3 digits/commands)."""
        presets = {
            "digits": {},
            "commands": dict(words=COMMANDS),
            "sequences": dict(words=DIGITS + COMMANDS, max_words=3),
        }
        if name not in presets:
            raise ValueError(f"unknown spoken-words preset {name!r}; expected one of {sorted(presets)}")
        return SpokenWordsConfig(**{**presets[name], **overrides})


def generate_spoken_words(n: int, seed: int = 0, config: SpokenWordsConfig | None = None,
                          cache_dir=None) -> Iterator[dict]:
    """Yield ``n`` ASR samples (``<audio>`` + "Transcribe the audio." -> transcript), deterministic given ``seed``.

    meta: ``transcript``, ``voice``, ``speed``, ``pitch``. Raises RuntimeError naming the package if espeak-ng
    is missing. Words are drawn from a shuffled deck so every word is equally frequent.
    """
    cfg = config or SpokenWordsConfig()
    if not 1 <= cfg.min_words <= cfg.max_words:
        raise ValueError("need 1 <= min_words <= max_words")
    rng = np.random.default_rng([seed, 1301])
    deck: list[str] = []
    for i in range(n):
        words = []
        for _ in range(int(rng.integers(cfg.min_words, cfg.max_words + 1))):
            if not deck:
                deck = list(rng.permutation(cfg.words))
            words.append(str(deck.pop()))
        voice = str(cfg.voices[rng.integers(len(cfg.voices))])
        speed = int(cfg.speeds[rng.integers(len(cfg.speeds))])
        pitch = int(cfg.pitches[rng.integers(len(cfg.pitches))])

        def pause():
            return np.zeros(int(rng.uniform(*cfg.pause_s) * SAMPLE_RATE), dtype=np.float32)

        pieces = [pause()]
        for w in words:
            pieces += [trim_silence(synthesize(w, voice, speed, pitch, cache_dir)), pause()]
        audio = np.concatenate(pieces)
        audio *= rng.uniform(*cfg.gain) / max(float(np.abs(audio).max()), 1e-6)
        audio += rng.normal(0, cfg.noise, audio.shape).astype(np.float32)
        transcript = " ".join(words)
        conversation = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": transcript}]
        meta = {"transcript": transcript, "voice": voice, "speed": speed, "pitch": pitch}
        yield make_sample(f"spoken-{seed}-{i:07d}", "audio", np.clip(audio, -1, 1), conversation, meta)
