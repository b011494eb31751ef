"""Speech synthesis with the espeak-ng command line tool, cached on disk and in memory.

espeak-ng writes 22050 Hz 16-bit WAV to stdout; clips are converted to 16 kHz mono float32 (the sample schema).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from modrwkv.data.audio_io import decode_audio_bytes

INSTALL_HINT = "espeak-ng is not installed; install it with `apt-get install espeak-ng` (Debian/Ubuntu package)"


def espeak_binary() -> str:
    """Path of the espeak-ng executable, or a RuntimeError that says how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


@functools.lru_cache(maxsize=1)
def espeak_version() -> str:
    """espeak-ng's version line (part of the cache key: another version speaks differently)."""
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def default_cache_dir() -> Path:
    """``$MODRWKV_CACHE/espeak`` if set, else ``~/.cache/modrwkv/espeak``."""
    root = os.environ.get("MODRWKV_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "modrwkv")
    return Path(root) / "espeak"


@functools.lru_cache(maxsize=4096)
def _synthesize_cached(text: str, voice: str, speed: int, pitch: int, cache_dir: str) -> np.ndarray:
    key = hashlib.sha1(f"{espeak_version()}|{voice}|{speed}|{pitch}|{text}".encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{key}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # a clip half-written by a killed process: synthesise again
    cmd = [espeak_binary(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng failed ({' '.join(cmd)}): {proc.stderr.decode(errors='replace').strip()}")
    audio = decode_audio_bytes(proc.stdout)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, audio)
    os.replace(tmp, path)  # atomic, so parallel writers and crashes never leave a truncated clip under the real name
    return audio


def synthesize(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50,
               cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Speak ``text`` with espeak-ng; returns 16 kHz mono float32 (a copy: callers may modify it).

    ``voice`` is an espeak-ng voice, optionally with a variant (``en-us+f3``); ``speed`` in words per minute;
    ``pitch`` 0..99. Clips are cached on disk under ``cache_dir`` (default ``default_cache_dir()``).
    """
    cache = str(cache_dir if cache_dir is not None else default_cache_dir())
    return _synthesize_cached(text, voice, int(speed), int(pitch), cache).copy()


def trim_silence(audio: np.ndarray, threshold: float = 0.01, pad: int = 160) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``threshold`` (keeping ``pad`` samples, 10 ms at 16 kHz)."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio
    return audio[max(0, loud[0] - pad): loud[-1] + 1 + pad]
