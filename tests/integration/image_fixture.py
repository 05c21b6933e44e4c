"""The lab's user image for integration tests, built once and cached across sessions.

`lab_image_path()` returns the cached raw image for the current recipe
(images/lab/), building it first when the recipe changed (about 90 s with a warm
pip wheel cache, a few minutes cold). Cache: $K1PROV_IMAGE_CACHE, default
~/.cache/k1prov/images. Wrap it in a session-scoped fixture where it is used.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

from k1prov.lab.image import build_lab_image

IMAGE_BUILD_TIMEOUT = 1800.0


def image_cache_dir() -> Path:
    return Path(os.environ.get("K1PROV_IMAGE_CACHE", Path.home() / ".cache" / "k1prov" / "images"))


@functools.cache
def lab_image_path() -> Path:
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[lab image {time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    return build_lab_image(image_cache_dir(), timeout=IMAGE_BUILD_TIMEOUT, progress=progress)
