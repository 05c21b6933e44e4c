"""Images in Glance: find-or-create by content, streamed uploads, verified checksums.

The one module that talks to Glance (through openstacksdk's image proxy); it
raises k1prov errors only (CloudError(service="glance") for Glance's refusals).

Identity of an image: k1prov owns the images tagged "k1prov" and
"k1prov-cluster:<cluster>". Registering a source whose bytes are already in
one of those images (same name, same content hash) reuses it without an
upload; changed bytes make a new image with the same name, and the old one
stays until `prune_unused` finds no node using it (a rebuild must not lose the
image a running node came from).

Content hash: Glance computes os_hash_algo/os_hash_value itself (sha512 unless
its [DEFAULT]hashing_algorithm says otherwise). k1prov compares in whatever
algorithm an existing image carries, and also records the source's published
checksum in the property "k1prov_source_checksum", so an http(s) source with a
known checksum is matched without downloading it.

Formats (unless the source says): qcow2 by its magic "QFI\\xfb", iso by
"CD001" at byte 32769, a Linux kernel (bzImage "HdrS" at 0x202) as aki/aki and
an initramfs (gzip, xz, zstd, lz4 or cpio magic) as ari/ari, everything else
raw/bare. aki/ari is what devstack and Bifrost register IPA with, and Glance
treats those two as uninspectable, so a kernel's legacy boot-sector header is
not rejected as a bad MBR (it would be for "raw").
"""
from __future__ import annotations

import hashlib
import logging
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from k1prov.atomic_file import write_atomic
from k1prov.cloud import describe_http_error, translate as translate_cloud_error
from k1prov.errors import CloudError, InventoryError
from k1prov.inventory.model import OWNER_TAG, ImageSource

log = logging.getLogger("k1prov.glance")

CLUSTER_TAG_PREFIX = "k1prov-cluster:"
PROP_CLUSTER = "k1prov_cluster"
PROP_SOURCE = "k1prov_source"
PROP_SOURCE_CHECKSUM = "k1prov_source_checksum"
# Nanoseconds since the epoch when k1prov made the image: Glance's created_at has
# whole seconds only, and "newest" decides which same-named image is current.
PROP_REGISTERED_NS = "k1prov_registered_ns"
CHECKSUM_ALGOS = ("sha256", "sha512")
# Glance's default [DEFAULT]hashing_algorithm; hashed while uploading so the
# result can be compared with what Glance reports.
GLANCE_DEFAULT_ALGO = "sha512"
CHUNK_SIZE = 1024 * 1024
# Enough to see every magic number detect_formats looks at (ISO's is at 32769).
SNIFF_SIZE = 64 * 1024
# Connect timeout for http(s) sources; the transfer itself is bounded by `timeout`.
HTTP_CONNECT_TIMEOUT = 30.0

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RegisteredImage:
    id: str
    name: str
    # Glance's own hash of the stored bytes, "sha512:HEX" (its os_hash_algo).
    checksum: str
    # True when an existing image with the same bytes was reused (no upload).
    reused: bool


# ---------------------------------------------------------------- checksums


def parse_checksum(text: str, *, field: str = "checksum") -> tuple[str, str]:
    """("sha256", "hex...") from "sha256:HEX" / "sha512:HEX" (or bare hex, by its length)."""
    value = text.strip()
    if ":" in value:
        algo, _, digest = value.partition(":")
        algo = algo.lower()
    else:
        algo, digest = {64: "sha256", 128: "sha512"}.get(len(value), ""), value
    digest = digest.lower()
    if algo not in CHECKSUM_ALGOS:
        raise InventoryError(f"unsupported checksum {text[:20]!r}: use sha256:HEX or sha512:HEX",
                             field=field)
    expected_len = hashlib.new(algo).digest_size * 2
    if not re.fullmatch(rf"[0-9a-f]{{{expected_len}}}", digest):
        raise InventoryError(f"{algo} checksum must be {expected_len} hex digits", field=field)
    return algo, digest


def checksum_from_sums_file(text: str, filename: str) -> tuple[str, str] | None:
    """The checksum of `filename` in a SHA*SUMS / "<file>.sha256" text, or None.

    Understands GNU lines ("HEX  name", "HEX *name"), BSD lines
    ("SHA256 (name) = HEX") and a file holding nothing but one digest.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        bsd = re.fullmatch(r"(SHA256|SHA512) \((.+)\) = ([0-9a-fA-F]+)", line)
        if bsd and os.path.basename(bsd.group(2)) == filename:
            return parse_checksum(f"{bsd.group(1).lower()}:{bsd.group(3)}")
        parts = line.split()
        if len(parts) >= 2 and os.path.basename(parts[1].lstrip("*")) == filename:
            return parse_checksum(parts[0])
    if len(lines) == 1 and len(lines[0].split()) == 1:
        return parse_checksum(lines[0])
    return None


def resolve_checksum(src: ImageSource, *, timeout: float) -> tuple[str, str] | None:
    """The expected (algo, hex) of the source: its checksum, or the one in its checksum_url."""
    if src.checksum:
        return parse_checksum(src.checksum, field=f"images.{src.name}.checksum")
    if not src.checksum_url:
        return None
    import requests

    try:
        response = requests.get(src.checksum_url, timeout=(min(HTTP_CONNECT_TIMEOUT, timeout), timeout))
        response.raise_for_status()
    except requests.RequestException as exc:
        raise CloudError(f"image {src.name}: cannot read checksum file {src.checksum_url}: {exc}",
                         service="http") from None
    filename = _source_filename(src)
    found = checksum_from_sums_file(response.text, filename)
    if found is None:
        raise InventoryError(f"{src.checksum_url} lists no checksum for {filename}",
                             field=f"images.{src.name}.checksum_url")
    return found


# ---------------------------------------------------------------- formats


def detect_formats(head: bytes) -> tuple[str, str]:
    """(disk_format, container_format) from the first SNIFF_SIZE bytes of an image."""
    if head[:4] == b"QFI\xfb":
        return "qcow2", "bare"
    if head[32769:32774] == b"CD001":
        return "iso", "bare"
    if head[0x202:0x206] == b"HdrS":
        return "aki", "aki"
    initramfs_magics = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18",
                        b"070701", b"070702", b"070707")
    if any(head.startswith(magic) for magic in initramfs_magics):
        return "ari", "ari"
    return "raw", "bare"


def _formats_for(src: ImageSource, head: bytes) -> tuple[str, str]:
    disk, container = detect_formats(head)
    if src.disk_format:
        disk = src.disk_format
        container = src.container_format or (disk if disk in ("aki", "ari", "ami") else "bare")
    elif src.container_format:
        container = src.container_format
    return disk, container


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
        self._buffer = b""
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
            while not self._buffer:
                if time.monotonic() > self._deadline:
                    raise CloudError(f"upload of {self._what} did not finish in time", service="glance")
                chunk = next(self._chunks, None)
                if chunk is None:
                    return b""
                self._buffer = chunk
            if n is None or n < 0:
                out, self._buffer = self._buffer, b""
            else:
                out, self._buffer = self._buffer[:n], self._buffer[n:]
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


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def digest_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "k1prov" / "digests"


def _hash_file(path: Path, algos: Iterable[str]) -> dict[str, str]:
    """Digests of a local file. Hashing a 1 GB image takes seconds, and a re-run of
    `cluster up` would spend most of its time on it: the digests are remembered per file,
    keyed by its size, mtime and inode, so a file changed in any way is hashed again."""
    wanted = set(algos)
    st = path.stat()
    key = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    entry = digest_cache_dir() / (hashlib.sha1(key["path"].encode()).hexdigest() + ".json")
    try:
        cached = json.loads(entry.read_text())
        if cached.get("key") == key and wanted <= set(cached.get("digests", {})):
            return {algo: cached["digests"][algo] for algo in wanted}
    except (OSError, ValueError):
        pass
    hashes = {algo: hashlib.new(algo) for algo in wanted}
    for chunk in _file_chunks(path):
        for h in hashes.values():
            h.update(chunk)
    digests = {algo: h.hexdigest() for algo, h in hashes.items()}
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(entry, json.dumps({"key": key, "digests": digests}), fsync=False)
    except OSError as exc:
        log.info("digest cache not written (%s): %s", entry, exc)
    return digests


def _read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SNIFF_SIZE)


def _source_filename(src: ImageSource) -> str:
    if src.url:
        return os.path.basename(urlparse(src.url).path)
    return os.path.basename(src.file or "")


def _local_path(src: ImageSource) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(src.file or "")))
    if not path.is_file():
        raise InventoryError(f"image {src.name}: file {path} not found", field=f"images.{src.name}.file")
    return path


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
            raise CloudError(f"glance: {what}: {describe_http_error(exc)}", service="glance") from None

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


def prune_unused(conn, cluster: str, in_use_ids: Iterable[str], *, keep_latest: bool = True) -> list[str]:
    """Delete the cluster's images that no node uses; the deleted ids.

    `keep_latest` keeps the newest active image of each name even when unused:
    it is the one the next deploy will take.
    """
    keep = set(in_use_ids)
    images = list_own_images(conn, cluster)
    if keep_latest:
        newest: dict[str, Any] = {}
        for image in images:
            if image.status == "active":
                newest[image.name] = image      # sorted oldest first: the last one wins
        keep |= {image.id for image in newest.values()}
    deleted = []
    for image in images:
        if image.id not in keep:
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
    """
    deadline = time.monotonic() + timeout
    if bool(src.file) == bool(src.url):
        raise InventoryError(f"image {src.name}: give exactly one of file or url", field=f"images.{src.name}")
    expected = resolve_checksum(src, timeout=timeout)
    candidates = list_own_images(conn, cluster, name=src.name)

    if src.url and expected is None:
        with tempfile.TemporaryDirectory(prefix="k1prov-image-") as tmp:
            path = Path(tmp) / (_source_filename(src) or "image")
            _download(src, path, deadline=deadline)
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
    path = _local_path(src)
    algos = {"sha256", GLANCE_DEFAULT_ALGO} | {c.hash_algo for c in candidates if c.hash_algo}
    if expected:
        algos.add(expected[0])
    local = _hash_file(path, [a for a in algos if a in hashlib.algorithms_available])
    if expected and local[expected[0]] != expected[1]:
        raise InventoryError(
            f"image {src.name}: checksum mismatch: {path} has {expected[0]}:{local[expected[0]]}, "
            f"expected {expected[0]}:{expected[1]}", field=f"images.{src.name}.checksum")
    source_checksum = f"{expected[0]}:{expected[1]}" if expected else f"sha256:{local['sha256']}"
    for image in reversed(candidates):         # newest first
        if _matches(image, local, source_checksum):
            return _registered(image, reused=True)
    size = path.stat().st_size
    reader = _HashingReader(_file_chunks(path), size=size, algos=algos, progress=progress,
                            deadline=deadline, what=src.name)
    disk, container = _formats_for(src, _read_head(path))
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
    response = _open_url(src, deadline=deadline)
    with response:
        size = int(response.headers["Content-Length"]) if response.headers.get("Content-Length") else None
        chunks = response.iter_content(CHUNK_SIZE)
        head, chunks = _peek(chunks, SNIFF_SIZE)
        disk, container = _formats_for(src, head)
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


# ---------------------------------------------------------------- http(s) sources


def _open_url(src: ImageSource, *, deadline: float):
    import requests

    remaining = max(1.0, deadline - time.monotonic())
    try:
        response = requests.get(src.url, stream=True,
                                timeout=(min(HTTP_CONNECT_TIMEOUT, remaining), remaining))
        response.raise_for_status()
    except requests.RequestException as exc:
        raise CloudError(f"image {src.name}: cannot download {src.url}: {exc}", service="http") from None
    return response


def _download(src: ImageSource, path: Path, *, deadline: float) -> None:
    import requests

    with _open_url(src, deadline=deadline) as response, path.open("wb") as out:
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                if time.monotonic() > deadline:
                    raise CloudError(f"download of {src.url} did not finish in time", service="http")
                out.write(chunk)
        except requests.RequestException as exc:
            raise CloudError(f"image {src.name}: download of {src.url} failed: {exc}",
                             service="http") from None


def _peek(chunks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
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


# ---------------------------------------------------------------- bypassing Glance


def direct_image_info(src: ImageSource) -> dict[str, str]:
    """instance_info fields that let standalone Ironic fetch the image itself (no Glance).

    A checksum becomes image_os_hash_algo + image_os_hash_value; a checksum_url
    is handed to Ironic as image_checksum (Ironic reads checksum files itself);
    a local file becomes a file:// URL (Ironic's conductor must be allowed to
    read it: [conductor]file_url_allowed_paths) with its sha256 computed here.
    """
    info: dict[str, str] = {}
    if src.url:
        info["image_source"] = src.url
    elif src.file:
        path = _local_path(src).resolve()
        info["image_source"] = path.as_uri()
    else:
        raise InventoryError(f"image {src.name}: give a file or url", field=f"images.{src.name}")
    if src.checksum:
        algo, value = parse_checksum(src.checksum, field=f"images.{src.name}.checksum")
        info["image_os_hash_algo"], info["image_os_hash_value"] = algo, value
    elif src.checksum_url:
        info["image_checksum"] = src.checksum_url
    elif src.file:
        info["image_os_hash_algo"] = "sha256"
        info["image_os_hash_value"] = _hash_file(_local_path(src), ["sha256"])["sha256"]
    else:
        raise InventoryError(f"image {src.name}: an image that bypasses Glance needs a checksum "
                             "or checksum_url", field=f"images.{src.name}.checksum")
    disk_format = src.disk_format
    if disk_format is None and src.file:
        disk_format = detect_formats(_read_head(_local_path(src)))[0]
    if disk_format is None:
        suffix = Path(urlparse(src.url or "").path).suffix.lower()
        disk_format = {".qcow2": "qcow2", ".iso": "iso", ".raw": "raw", ".img": "raw"}.get(suffix)
    if disk_format:
        info["image_disk_format"] = disk_format
    return info
