"""LibriSpeech folders -> ASR shards.

Layout: ``<root>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` beside ``<speaker>-<chapter>.trans.txt``
whose lines are ``<speaker>-<chapter>-<utt> TRANSCRIPT``. 16 kHz flac files are stored as they are; other rates are
resampled to 16 kHz. Utterances whose audio is missing, unreadable or too long are skipped and counted.

    python -m modrwkv.data.convert_librispeech --root LibriSpeech/test-clean --out shards/librispeech-test-clean
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from modrwkv.data.atomic import atomic_dir
from modrwkv.data.convert_common import ConvertReport
from modrwkv.data.schema import SAMPLE_RATE, sanitize_key
from modrwkv.data.shards import json_bytes, write_shards
from modrwkv.data.spoken_words import PROMPT


def _records(root: Path, report: ConvertReport, lowercase: bool, max_seconds: float | None):
    import soundfile as sf

    from modrwkv.data.audio_io import decode_audio_bytes, encode_flac

    for trans in sorted(root.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            path = trans.parent / f"{utt}.flac"
            try:
                data = path.read_bytes()
                info = sf.info(path)
            except FileNotFoundError:
                report.skip("missing_audio", str(path))
                continue
            except (OSError, RuntimeError):  # soundfile raises LibsndfileError (a RuntimeError) on garbage
                report.skip("unreadable_audio", str(path))
                continue
            duration = info.frames / info.samplerate
            if max_seconds is not None and duration > max_seconds:
                report.skip("too_long", str(path))
                continue
            if info.samplerate != SAMPLE_RATE or info.channels != 1:
                data = encode_flac(decode_audio_bytes(data))
            transcript = text.strip().lower() if lowercase else text.strip()
            speaker, chapter = (utt.split("-") + ["", ""])[:2]
            conversation = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": transcript}]
            meta = {"transcript": transcript, "id": utt, "speaker": speaker, "chapter": chapter,
                    "duration": round(duration, 3), "source": "librispeech"}
            report.written["all"] += 1
            yield {"__key__": sanitize_key(utt), "json": json_bytes("audio", conversation, meta), "flac": data}


def convert_librispeech(root: str | os.PathLike, out_dir: str | os.PathLike, prefix: str = "librispeech",
                        maxcount: int = 1000, lowercase: bool = True,
                        max_seconds: float | None = None) -> ConvertReport:
    """Convert a LibriSpeech split folder (e.g. ``LibriSpeech/test-clean``) into ASR shards in ``out_dir``.

    ``lowercase``: LibriSpeech transcripts are upper case; lower-case them (answer and ``meta["transcript"]``).
    ``max_seconds``: skip longer utterances (Whisper's encoder sees at most 30 s). Returns a ``ConvertReport``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LibriSpeech folder {root} does not exist")
    if not any(root.rglob("*.trans.txt")):
        raise FileNotFoundError(f"no <speaker>-<chapter>.trans.txt files under {root}: not a LibriSpeech folder")
    report = ConvertReport()
    with atomic_dir(out_dir) as tmp:
        shards = write_shards(_records(root, report, lowercase, max_seconds), tmp, prefix, maxcount)
    report.shards["all"] = [str(Path(out_dir) / Path(p).name) for p in shards]
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Convert LibriSpeech folders (flac + trans.txt) to ASR shards.")
    parser.add_argument("--root", required=True, help="a LibriSpeech split folder, e.g. LibriSpeech/test-clean")
    parser.add_argument("--out", required=True, help="output folder of shards (replaced atomically)")
    parser.add_argument("--prefix", default="librispeech")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.add_argument("--keep-case", action="store_true", help="keep the upper-case transcripts")
    parser.add_argument("--max-seconds", type=float, default=None, help="skip longer utterances")
    args = parser.parse_args(argv)
    print(convert_librispeech(args.root, args.out, args.prefix, args.maxcount, not args.keep_case, args.max_seconds))


if __name__ == "__main__":
    main()
