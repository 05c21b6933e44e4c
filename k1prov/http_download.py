"""http(s) image sources: streamed downloads with a deadline (requests).

Errors are CloudError(service="http"); the transfer is bounded by the caller's deadline,
the connection by HTTP_CONNECT_TIMEOUT.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from k1prov.digest_cache import CHUNK_SIZE
from k1prov.errors import CloudError

# Connect timeout for http(s) sources; the transfer itself is bounded by the deadline.
HTTP_CONNECT_TIMEOUT = 30.0


def fetch_text(url: str, *, timeout: float, what: str) -> str:
    """A small text (a checksum file) in one request; `what` starts the error message."""
    import requests

    try:
        response = requests.get(url, timeout=(min(HTTP_CONNECT_TIMEOUT, timeout), timeout))
        response.raise_for_status()
    except requests.RequestException as exc:
        raise CloudError(f"{what}: {exc}", service="http") from None
    return response.text


def open_url(url: str, *, deadline: float, what: str):
    """A streaming response for `url` (use as a context manager)."""
    import requests

    remaining = max(1.0, deadline - time.monotonic())
    try:
        response = requests.get(url, stream=True, timeout=(min(HTTP_CONNECT_TIMEOUT, remaining), remaining))
        response.raise_for_status()
    except requests.RequestException as exc:
        raise CloudError(f"{what}: cannot download {url}: {exc}", service="http") from None
    return response


def download(url: str, path: Path, *, deadline: float, what: str) -> None:
    """`url` into `path`, finished before `deadline` (time.monotonic())."""
    import requests

    with open_url(url, deadline=deadline, what=what) as response, path.open("wb") as out:
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                if time.monotonic() > deadline:
                    raise CloudError(f"download of {url} did not finish in time", service="http")
                out.write(chunk)
        except requests.RequestException as exc:
            raise CloudError(f"{what}: download of {url} failed: {exc}", service="http") from None


def peek(chunks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `size` bytes of a chunk stream, and the whole stream again."""
    taken: list[bytes] = []
    have = 0
    for chunk in chunks:
        taken.append(chunk)
        have += len(chunk)
        if have >= size:
            break
    head = b"".join(taken)

    def again() -> Iterator[bytes]:
        if head:
            yield head
        yield from chunks

    return head[:size], again()
