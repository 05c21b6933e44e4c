"""The upload reader that hashes an image while openstacksdk sends it (k1prov.glance):
what http.client reads from it, 8 KiB at a time, is the file, and the digests are the
file's."""
from __future__ import annotations

import hashlib
import os
import time

from k1prov.glance import _HashingReader


def reader(chunks, size):
    return _HashingReader(iter(chunks), size=size, algos=["sha512", "md5"], progress=None,
                          deadline=time.monotonic() + 600, what="test image")


def test_small_reads_across_chunks_give_the_file_and_its_digests():
    data = os.urandom(3 * 1024 * 1024 + 123)
    chunks = [data[i:i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
    r = reader(chunks, len(data))
    got = []
    while piece := r.read(8192):
        assert len(piece) <= 8192
        got.append(piece)
    assert b"".join(got) == data
    assert r.done == len(data)
    assert r.hashes["sha512"].hexdigest() == hashlib.sha512(data).hexdigest()
    assert r.hashes["md5"].hexdigest() == hashlib.md5(data).hexdigest()


def test_read_all_and_empty_chunks():
    r = reader([b"", b"abc", b"", b"defg"], 7)
    assert r.read(2) == b"ab"
    assert r.read() == b"c"          # the rest of the current chunk
    assert r.read(-1) == b"defg"
    assert r.read(5) == b""
    assert r.hashes["md5"].hexdigest() == hashlib.md5(b"abcdefg").hexdigest()
