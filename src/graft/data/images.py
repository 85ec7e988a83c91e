"""Image files: one folder per class, or a list of (path, label); every file checked before any model runs.

Each file is opened and fully decoded once (PIL), which finds corrupt and truncated files, and records
its size and mode. Mixed modes are converted to the richest one present (RGB over grey); mixed sizes are
resized to the most common size unless ``image_size`` says otherwise, and both are reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from graft.data.checks import fingerprint
from graft.data.problems import ProblemLog
from graft.errors import DataError
from graft.progress import track

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 1, "P": 3, "RGB": 3, "RGBA": 3, "CMYK": 3,
                 "YCbCr": 3, "LAB": 3, "HSV": 3}


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _probe(path: str) -> tuple[str, tuple[int, int] | None, str | None, str]:
    """(path, (H, W) or None, mode, error or fingerprint) after a full decode."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # decodes every byte: truncated files fail here, not in the middle of training
            size, mode = (im.size[1], im.size[0]), im.mode
        return path, size, mode, fingerprint(Path(path).read_bytes())
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return path, None, None, f"{type(exc).__name__}: {exc}"


def _target_mode(modes: Counter) -> str:
    """RGB when any image has colour, else grey (alpha is dropped: networks take 1 or 3 channels)."""
    return "RGB" if any(MODE_CHANNELS.get(m, 3) >= 3 for m in modes) else "L"


def scan_images(paths: Sequence[str], log: ProblemLog, image_size: tuple[int, int] | None = None,
                image_mode: str | None = None) -> tuple[list[str], str, tuple[int, int], dict[str, str]]:
    """Check every file; returns the good paths, the mode and size to read them at, and their fingerprints."""
    if image_mode is not None and image_mode not in ("RGB", "L"):
        raise DataError("image_mode 'RGB' (3 channels) or 'L' (grey, 1 channel)", repr(image_mode), "pick one of them")
    if image_size is not None:
        size = tuple(image_size)
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                     for v in size):
            raise DataError("image_size as (height, width), two positive integers", repr(image_size),
                            "for example image_size=(32, 32)")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(track(pool.map(_probe, paths), "checking images", total=len(paths)))
    bad = [f"{p} ({err})" for p, size, _, err in results if size is None]
    log.skip_or_keep("corrupt_image", bad, f"{len(bad)} image files cannot be decoded (corrupt, truncated or "
                            "not images)", "replace or delete them")
    good = [(p, size, mode, fp) for p, size, mode, fp in results if size is not None]  # bad ones: dropped or fatal
    modes = Counter(m for _, _, m, _ in good)
    sizes = Counter(s for _, s, _, _ in good)
    mode = image_mode or (_target_mode(modes) if modes else "RGB")
    if len(modes) > 1:
        log.add("mixed_modes", "warning", f"images come in {len(modes)} modes ({dict(modes)}); all are read as {mode}",
                "pass image_mode= to choose another", [p for p, _, m, _ in good if m != modes.most_common(1)[0][0]])
    deep = [p for p, _, m, _ in good if m.startswith("I") or m == "F"]
    if deep:
        log.add("high_bit_depth", "warning", f"{len(deep)} images have more than 8 bits per pixel (16-bit or float); "
                "they are read as 8-bit grey: 16-bit integers keep their top 8 bits, floats in 0..1 are scaled by 255",
                "convert them yourself (e.g. to float arrays in an .npz) to keep every bit", deep)
    size = tuple(image_size) if image_size else (sizes.most_common(1)[0][0] if sizes else (0, 0))
    if len(sizes) > 1:
        odd = [f"{p} ({s[0]}x{s[1]})" for p, s, _, _ in good if s != size]
        shown = ", ".join(f"{h}x{w}: {n}" for (h, w), n in sizes.most_common(4))
        log.add("mixed_sizes", "warning", f"images come in {len(sizes)} sizes ({shown}); all are resized to "
                f"{size[0]}x{size[1]}", "pass image_size=(H, W) to choose the size", odd)
    return [p for p, _, _, _ in good], mode, size, {p: fp for p, _, _, fp in good}
