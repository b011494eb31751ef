"""Audio decoding and resampling to the 16 kHz mono float32 arrays of the sample schema.

Resampling is done with numpy's FFT (band-limited, so downsampling does not alias) to avoid depending on
torchaudio or scipy for a few lines of signal processing.
"""

from __future__ import annotations

import io

import numpy as np

from modrwkv.data.schema import SAMPLE_RATE


def resample(audio: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D signal from ``sr_in`` to ``sr_out`` Hz (FFT method); returns float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if sr_in == sr_out or audio.size == 0:
        return audio
    n_in = audio.shape[0]
    n_out = max(1, int(round(n_in * sr_out / sr_in)))
    spec = np.fft.rfft(audio.astype(np.float64))
    n_bins = n_out // 2 + 1
    if n_bins <= spec.shape[0]:
        spec = spec[:n_bins]  # drop frequencies above the new Nyquist: the anti-aliasing filter
    else:
        spec = np.concatenate([spec, np.zeros(n_bins - spec.shape[0], dtype=spec.dtype)])
    out = np.fft.irfft(spec, n=n_out) * (n_out / n_in)
    return out.astype(np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels of a [S, C] array (soundfile's layout) into [S]."""
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def decode_audio_bytes(data: bytes, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Decode WAV/FLAC/OGG bytes into 16 kHz mono float32 (raises on undecodable or empty audio)."""
    import soundfile as sf

    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    audio = to_mono(np.asarray(audio, dtype=np.float32))
    if audio.size == 0:
        raise ValueError("empty audio")
    return resample(audio, sr, sr_out)


def encode_flac(audio: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Encode float32 audio in [-1, 1] as 16-bit FLAC bytes (lossy only by the 16-bit quantisation)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()
