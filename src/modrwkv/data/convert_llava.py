"""LLaVA json + image folder -> image shards.

The LLaVA format is a json list of ``{"id", "image": path relative to the image folder, "conversations":
[{"from": "human" | "gpt", "value": "<image>\\n..."}, ...]}``. Image files are stored with their original bytes
(no re-encoding), after decoding them fully; entries that are malformed (not an object, ``conversations`` not a
list of turns), whose image is missing, truncated or unreadable, or absent (text-only entries) are skipped and
counted by reason.

    python -m modrwkv.data.convert_llava --json llava_v1_5_mix665k.json --images data/ --out shards/llava
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

from modrwkv.data.atomic import atomic_dir
from modrwkv.data.convert_common import ConvertReport
from modrwkv.data.schema import sanitize_key
from modrwkv.data.shards import IMAGE_EXTS, json_bytes, write_shards

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def llava_conversation(turns: list) -> list[dict] | None:
    """LLaVA turns -> schema turns (human -> user, gpt -> assistant); None if malformed or without an answer."""
    out = []
    for turn in turns or []:
        role = ROLE_MAP.get(str(turn.get("from", "")).lower())
        if role is None or not isinstance(turn.get("value"), str):
            return None
        out.append({"role": role, "content": turn["value"]})
    while out and out[-1]["role"] != "assistant":  # a trailing question without an answer teaches nothing
        out.pop()
    return out if out and out[0]["role"] == "user" else None


def _records(entries, image_root: Path, report: ConvertReport):
    from PIL import Image, UnidentifiedImageError

    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            report.skip("bad_entry", f"entry {index} ({type(entry).__name__}, not an object)")
            continue
        ident = str(entry.get("id", index))
        if not entry.get("image"):
            report.skip("no_image", ident)  # text-only entries of the instruction mix: not an image sample
            continue
        if not isinstance(entry["image"], str):
            report.skip("bad_entry", f"{ident} (image is a {type(entry['image']).__name__}, not a path)")
            continue
        turns = entry.get("conversations")
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):  # e.g. a string
            report.skip("bad_conversation", ident)
            continue
        conversation = llava_conversation(turns)
        if conversation is None:
            report.skip("bad_conversation", ident)
            continue
        path = image_root / entry["image"]
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as img:
                fmt = (img.format or "").lower()
                img.load()  # decode every pixel: a truncated or corrupt file is skipped here, not in training
                if min(img.size) < 1:
                    raise ValueError(f"empty image {img.size}")
        except FileNotFoundError:
            report.skip("missing_image", str(path))
            continue
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
            report.skip("unreadable_image", str(path))
            continue
        ext = {"jpeg": "jpg", "mpo": "jpg"}.get(fmt, fmt)
        if ext not in IMAGE_EXTS:  # e.g. gif: store as png, which every reader decodes
            with Image.open(io.BytesIO(data)) as img:
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="PNG")
            data, ext = buf.getvalue(), "png"
        # the answer to the first question: evaluation prompts with the turns before the first assistant turn
        answer = next(t["content"] for t in conversation if t["role"] == "assistant")
        meta = {"id": ident, "image": entry["image"], "source": "llava", "answer": answer}
        report.written["all"] += 1
        yield {"__key__": sanitize_key(f"{index:08d}-{ident}")[:120], "json": json_bytes("image", conversation, meta),
               ext: data}


def convert_llava(json_path: str | os.PathLike, image_root: str | os.PathLike, out_dir: str | os.PathLike,
                  prefix: str = "llava", maxcount: int = 1000, limit: int | None = None) -> ConvertReport:
    """Convert a LLaVA json (+ its image folder) into ``out_dir/<prefix>-NNNNNN.tar`` shards, atomically.

    ``limit``: convert only the first ``limit`` entries. Returns a ``ConvertReport`` (written, skipped by reason).
    """
    entries = json.loads(Path(json_path).read_text())
    if not isinstance(entries, list):
        raise ValueError(f"{json_path}: expected a json list of LLaVA entries, got {type(entries).__name__}")
    if limit is not None:
        entries = entries[:limit]
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise FileNotFoundError(f"image folder {image_root} does not exist")
    report = ConvertReport()
    with atomic_dir(out_dir) as tmp:
        report.shards["all"] = write_shards(_records(entries, image_root, report), tmp, prefix, maxcount)
    report.shards["all"] = [str(Path(out_dir) / Path(p).name) for p in report.shards["all"]]
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Convert LLaVA json + image folder to webdataset image shards.")
    parser.add_argument("--json", required=True, help="LLaVA json file (a list of entries)")
    parser.add_argument("--images", required=True, help="folder the entries' 'image' paths are relative to")
    parser.add_argument("--out", required=True, help="output folder of shards (replaced atomically)")
    parser.add_argument("--prefix", default="llava")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N entries")
    args = parser.parse_args(argv)
    print(convert_llava(args.json, args.images, args.out, args.prefix, args.maxcount, args.limit))


if __name__ == "__main__":
    main()
