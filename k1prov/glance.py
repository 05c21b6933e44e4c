"""Images in Glance: find-or-create by content, streamed uploads, verified checksums.

Checksums and formats are k1prov.image_content, the remembered digests of local files
k1prov.digest_cache, http(s) sources k1prov.http_download. This is the one module that
talks to Glance (through openstacksdk's image proxy); it raises k1prov errors only
(CloudError(service="glance") for Glance's refusals).

Identity of an image: k1prov owns the images tagged "k1prov" and
"k1prov-cluster:<cluster>". Registering a source whose bytes are already in
one of those images (same name, same content hash) reuses it without an
upload; changed bytes make a new image with the same name, and the old one
stays (a rebuild must not lose the image a running node came from) until
`cluster down --unenroll` deletes the cluster's images.

Content hash: Glance computes os_hash_algo/os_hash_value itself (sha512 unless
its [DEFAULT]hashing_algorithm says otherwise). k1prov compares in whatever
algorithm an existing image carries, and also records the source's published
checksum in the property "k1prov_source_checksum", so an http(s) source with a
known checksum is matched without downloading it.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k1prov.cloud import describe_http_error, refusal, translate as translate_cloud_error
from k1prov.digest_cache import CHUNK_SIZE, file_chunks, hash_file
from k1prov.errors import CloudError, InventoryError
from k1prov.http_download import download, fetch_text, open_url, peek
from k1prov.image_content import (SNIFF_SIZE, checksum_from_sums_file, formats_for, local_path, parse_checksum,
                                  read_head, source_filename)
from k1prov.inventory.model import OWNER_TAG, ImageSource

log = logging.getLogger("k1prov.glance")

CLUSTER_TAG_PREFIX = "k1prov-cluster:"
PROP_CLUSTER = "k1prov_cluster"
PROP_SOURCE = "k1prov_source"
PROP_SOURCE_CHECKSUM = "k1prov_source_checksum"
# Nanoseconds since the epoch when k1prov made the image: Glance's created_at has
# whole seconds only, and "newest" decides which same-named image is current.
PROP_REGISTERED_NS = "k1prov_registered_ns"
# Glance's default [DEFAULT]hashing_algorithm; hashed while uploading so the
# result can be compared with what Glance reports.
GLANCE_DEFAULT_ALGO = "sha512"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RegisteredImage:
    id: str
    name: str
    # Glance's own hash of the stored bytes, "sha512:HEX" (its os_hash_algo).
    checksum: str
    # True when an existing image with the same bytes was reused (no upload).
    reused: bool


def resolve_checksum(src: ImageSource, *, timeout: float) -> tuple[str, str] | None:
    """The expected (algo, hex) of the source: its checksum, or the one in its checksum_url."""
    if src.checksum:
        return parse_checksum(src.checksum, field=f"images.{src.name}.checksum")
    if not src.checksum_url:
        return None
    text = fetch_text(src.checksum_url, timeout=timeout,
                      what=f"image {src.name}: cannot read checksum file {src.checksum_url}")
    filename = source_filename(src)
    found = checksum_from_sums_file(text, filename)
    if found is None:
        raise InventoryError(f"{src.checksum_url} lists no checksum for {filename}",
                             field=f"images.{src.name}.checksum_url")
    return found


# ---------------------------------------------------------------- streaming


class _HashingReader:
    """A file-like object over chunks: hashes, reports progress, enforces a deadline.

    requests streams any object with read(); errors raised inside read() come
    back wrapped by urllib3/keystoneauth, so the reader keeps its own error for
    the caller to re-raise as it is.
    """

    def __init__(self, chunks: Iterator[bytes], *, size: int | None, algos: Iterable[str],
                 progress: Progress | None, deadline: float, what: str):
        self._chunks = chunks
        # The current chunk and how much of it was read: http.client reads 8 KiB at a time,
        # and cutting the rest of a 1 MiB chunk off after every read copied it again each
        # time (~64 MiB of copying per MiB uploaded: 12 s of a 1.1 GB upload, profiled).
        self._buffer = b""
        self._pos = 0
        self.size = size
        self.hashes = {algo: hashlib.new(algo) for algo in set(algos)}
        self.done = 0
        self._progress = progress
        self._deadline = deadline
        self._what = what
        self.error: Exception | None = None

    def __len__(self) -> int:
        return self.size or 0

    def __bool__(self) -> bool:
        # openstacksdk checks `if data:`; an empty image is still data.
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            while self._pos >= len(self._buffer):
                if time.monotonic() > self._deadline:
                    raise CloudError(f"upload of {self._what} did not finish in time", service="glance")
                chunk = next(self._chunks, None)
                if chunk is None:
                    return b""
                self._buffer, self._pos = chunk, 0
            end = len(self._buffer) if n is None or n < 0 else self._pos + n
            out = self._buffer[self._pos:end]
            self._pos += len(out)
            for h in self.hashes.values():
                h.update(out)
            self.done += len(out)
            if self._progress is not None:
                self._progress(self.done, self.size or 0)
            return out
        except Exception as exc:
            self.error = exc
            raise

    def hexdigest(self, algo: str) -> str | None:
        h = self.hashes.get(algo)
        return h.hexdigest() if h is not None else None


# ---------------------------------------------------------------- Glance


def _glance_errors(what: str):
    """Context manager translating openstacksdk/keystoneauth errors into CloudError."""
    from contextlib import contextmanager

    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    @contextmanager
    def translate():
        try:
            yield
        except (ks_exc.DiscoveryFailure, ks_exc.ConnectionError) as exc:
            # Glance is not there at all: one line naming it and its URL (k1prov.cloud).
            raise translate_cloud_error(exc, None, service="Glance") from None
        except (os_exc.SDKException, ks_exc.ClientException) as exc:
            raise refusal(exc, service="Glance") or \
                CloudError(f"glance: {what}: {describe_http_error(exc)}", service="glance") from None

    return translate()


def _own_tags(cluster: str) -> list[str]:
    return [OWNER_TAG, CLUSTER_TAG_PREFIX + cluster]


def _is_own(image: Any, cluster: str) -> bool:
    tags = set(image.tags or [])
    return set(_own_tags(cluster)) <= tags and (image.properties or {}).get(PROP_CLUSTER, cluster) == cluster


def list_own_images(conn, cluster: str, *, name: str | None = None) -> list[Any]:
    """k1prov's images of `cluster` (openstacksdk Image objects), oldest first."""
    query: dict[str, Any] = {"tag": _own_tags(cluster)}
    if name is not None:
        query["name"] = name
    with _glance_errors("list images"):
        images = [img for img in conn.image.images(**query) if _is_own(img, cluster)]
    return sorted(images, key=_age_key)


def _age_key(image: Any) -> tuple[str, int, str]:
    stamp = str((image.properties or {}).get(PROP_REGISTERED_NS, "0"))
    return (image.created_at or "", int(stamp) if stamp.isdigit() else 0, image.id)


def delete_own_images(conn, cluster: str) -> list[str]:
    """Delete every image k1prov registered for `cluster`; the deleted ids."""
    deleted = []
    for image in list_own_images(conn, cluster):
        _delete(conn, image.id)
        deleted.append(image.id)
    return deleted


def _delete(conn, image_id: str) -> None:
    with _glance_errors(f"delete image {image_id}"):
        conn.image.delete_image(image_id, ignore_missing=True)


def _matches(image: Any, local: dict[str, str], source_checksum: str | None) -> bool:
    if image.status != "active":
        return False
    algo, value = image.hash_algo, image.hash_value
    if algo and value and algo in local:
        return local[algo] == value
    # No local bytes to compare with (an http source): trust the published
    # checksum recorded when the image was made, or Glance's own in that algorithm.
    if source_checksum is None:
        return False
    if algo and value and source_checksum == f"{algo}:{value}":
        return True
    return (image.properties or {}).get(PROP_SOURCE_CHECKSUM) == source_checksum


def register_image(conn, src: ImageSource, *, cluster: str, timeout: float,
                   progress: Progress | None = None, visibility: str | None = None) -> RegisteredImage:
    """Make sure Glance holds the bytes of `src` as one of k1prov's images of `cluster`.

    A local file is hashed before anything is sent: a checksum that does not
    match raises InventoryError and nothing is uploaded. An http(s) source is
    streamed straight into Glance (never held in memory) and hashed on the
    way; when its bytes turn out not to match the checksum, the new image is
    deleted and CloudError("checksum mismatch ...") raised. An http(s) source
    without any checksum is first downloaded to a temporary file (under
    $TMPDIR) so that its content can be compared with the existing images.

    `progress(done_bytes, total_bytes)` is called while uploading (total 0 when
    the size is unknown); `timeout` bounds the whole call.

    The caller holds the cluster's lock (k1prov.run_records.locked_run): an image of this
    name that is not active is then no run's upload under way but the leftover of one
    that ended half-way (Glance stopped mid-upload, k1prov killed), which could not delete
    it then; it is deleted now, so that each image is in Glance once.
    """
    deadline = time.monotonic() + timeout
    if bool(src.file) == bool(src.url):
        raise InventoryError(f"image {src.name}: give exactly one of file or url", field=f"images.{src.name}")
    expected = resolve_checksum(src, timeout=timeout)
    candidates = []
    for image in list_own_images(conn, cluster, name=src.name):
        if image.status == "active":
            candidates.append(image)
        else:
            log.warning("deleting glance image %s (%s, %s): left half-made by an earlier run",
                        image.id, src.name, image.status)
            _delete(conn, image.id)

    if src.url and expected is None:
        with tempfile.TemporaryDirectory(prefix="k1prov-image-") as tmp:
            path = Path(tmp) / (source_filename(src) or "image")
            download(src.url, path, deadline=deadline, what=f"image {src.name}")
            local = ImageSource(name=src.name, file=str(path), disk_format=src.disk_format,
                                container_format=src.container_format)
            return _register_file(conn, local, origin=src.url, expected=None, candidates=candidates,
                                  cluster=cluster, deadline=deadline, progress=progress,
                                  visibility=visibility)
    if src.file:
        return _register_file(conn, src, origin=src.file, expected=expected, candidates=candidates,
                              cluster=cluster, deadline=deadline, progress=progress, visibility=visibility)
    return _register_url(conn, src, expected=expected, candidates=candidates, cluster=cluster,
                         deadline=deadline, progress=progress, visibility=visibility)


def _register_file(conn, src: ImageSource, *, origin: str, expected: tuple[str, str] | None,
                   candidates: list[Any], cluster: str, deadline: float, progress: Progress | None,
                   visibility: str | None) -> RegisteredImage:
    path = local_path(src)
    algos = {"sha256", GLANCE_DEFAULT_ALGO} | {c.hash_algo for c in candidates if c.hash_algo}
    if expected:
        algos.add(expected[0])
    local = hash_file(path, [a for a in algos if a in hashlib.algorithms_available])
    if expected and local[expected[0]] != expected[1]:
        raise InventoryError(
            f"image {src.name}: checksum mismatch: {path} has {expected[0]}:{local[expected[0]]}, "
            f"expected {expected[0]}:{expected[1]}", field=f"images.{src.name}.checksum")
    source_checksum = f"{expected[0]}:{expected[1]}" if expected else f"sha256:{local['sha256']}"
    for image in reversed(candidates):         # newest first
        if _matches(image, local, source_checksum):
            return _registered(image, reused=True)
    size = path.stat().st_size
    reader = _HashingReader(file_chunks(path), size=size, algos=algos, progress=progress,
                            deadline=deadline, what=src.name)
    disk, container = formats_for(src, read_head(path))
    return _create_and_upload(conn, src, reader, origin=origin, source_checksum=source_checksum,
                              expected=expected, disk_format=disk, container_format=container,
                              cluster=cluster, visibility=visibility)


def _register_url(conn, src: ImageSource, *, expected: tuple[str, str], candidates: list[Any],
                  cluster: str, deadline: float, progress: Progress | None,
                  visibility: str | None) -> RegisteredImage:
    source_checksum = f"{expected[0]}:{expected[1]}"
    for image in reversed(candidates):
        if _matches(image, {}, source_checksum):
            return _registered(image, reused=True)
    response = open_url(src.url, deadline=deadline, what=f"image {src.name}")
    with response:
        size = int(response.headers["Content-Length"]) if response.headers.get("Content-Length") else None
        chunks = response.iter_content(CHUNK_SIZE)
        head, chunks = peek(chunks, SNIFF_SIZE)
        disk, container = formats_for(src, head)
        reader = _HashingReader(chunks, size=size, algos={expected[0], GLANCE_DEFAULT_ALGO, "sha256"},
                                progress=progress, deadline=deadline, what=src.name)
        return _create_and_upload(conn, src, reader, origin=src.url or "", source_checksum=source_checksum,
                                  expected=expected, disk_format=disk, container_format=container,
                                  cluster=cluster, visibility=visibility)


def _create_and_upload(conn, src: ImageSource, reader: _HashingReader, *, origin: str,
                       source_checksum: str, expected: tuple[str, str] | None, disk_format: str,
                       container_format: str, cluster: str, visibility: str | None) -> RegisteredImage:
    from openstack import exceptions
    from openstack.image.v2.image import Image

    attrs: dict[str, Any] = {
        "name": src.name,
        "disk_format": disk_format,
        "container_format": container_format,
        "tags": _own_tags(cluster),
        PROP_CLUSTER: cluster,
        PROP_SOURCE: origin[:255],
        PROP_SOURCE_CHECKSUM: source_checksum,
        PROP_REGISTERED_NS: str(time.time_ns()),
    }
    if visibility:
        attrs["visibility"] = visibility
    with _glance_errors(f"create image {src.name}"):
        image = Image.new(**attrs).create(conn.image)
    log.info("uploading %s to glance image %s (%s/%s)", src.name, image.id, disk_format, container_format)
    try:
        with _glance_errors(f"upload image {src.name}"):
            try:
                response = image.upload(conn.image, data=reader, size=reader.size)
            except Exception:
                if reader.error is not None:
                    raise reader.error from None
                raise
            if reader.error is not None:
                raise reader.error
            # Image.upload hands back the response without checking it.
            exceptions.raise_from_response(response)
            stored = conn.image.get_image(image.id)
        _verify(src, stored, reader, expected)
    except BaseException:
        # A half-made image must not be found by the next run (nor by Ironic).
        try:
            _delete(conn, image.id)
        except CloudError as exc:
            log.warning("could not delete the failed image %s: %s", image.id, exc)
        raise
    return _registered(stored, reused=False)


def _verify(src: ImageSource, stored: Any, reader: _HashingReader, expected: tuple[str, str] | None) -> None:
    if stored.status != "active":
        raise CloudError(f"glance: image {src.name} is {stored.status} after its upload", service="glance")
    if expected is not None:
        got = reader.hexdigest(expected[0])
        if got != expected[1]:
            raise CloudError(f"checksum mismatch for image {src.name}: the source sent {expected[0]}:{got}, "
                             f"expected {expected[0]}:{expected[1]}", service="glance")
    algo, value = stored.hash_algo, stored.hash_value
    if algo and value:
        if expected is not None and algo == expected[0] and value != expected[1]:
            raise CloudError(f"checksum mismatch for image {src.name}: glance stored {algo}:{value}, "
                             f"expected {algo}:{expected[1]}", service="glance")
        sent = reader.hexdigest(algo)
        if sent is not None and sent != value:
            raise CloudError(f"checksum mismatch for image {src.name}: glance stored {algo}:{value}, "
                             f"k1prov sent {algo}:{sent}", service="glance")
    if stored.size is not None and stored.size != reader.done:
        raise CloudError(f"glance: image {src.name} holds {stored.size} bytes, k1prov sent {reader.done}",
                         service="glance")


def _registered(image: Any, *, reused: bool) -> RegisteredImage:
    checksum = f"{image.hash_algo}:{image.hash_value}" if image.hash_algo else f"md5:{image.checksum}"
    return RegisteredImage(id=image.id, name=image.name, checksum=checksum, reused=reused)


