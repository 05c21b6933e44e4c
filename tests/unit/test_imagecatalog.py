import hashlib
import os
import time
from pathlib import Path

import pytest

from k1prov import digest_cache, glance, image_content
from k1prov.errors import InventoryError
from k1prov.imagecatalog import (DEFAULT_CATALOG, lab_deploy_image_bytes, load_catalog, resolve_images)
from k1prov.inventory.model import Cloud, ImageSource, Images, Inventory


def _inv(tmp_path, images):
    return Inventory(path=tmp_path / "inv.yaml", cluster="c", cloud=Cloud(), nodes=(), images=images)


def test_shipped_catalog_is_valid_and_real():
    catalog = load_catalog(DEFAULT_CATALOG)
    for name in ("ipa-centos9-master-kernel", "ipa-centos9-master-ramdisk", "debian-12-genericcloud",
                 "k1prov-lab", "k1prov-lab-deploy-kernel", "k1prov-lab-deploy-ramdisk"):
        assert name in catalog
    for entry in catalog.values():
        if entry.url:
            assert entry.url.startswith("https://")
            assert entry.checksum or entry.checksum_url.startswith("https://")
    assert catalog["ipa-centos9-master-kernel"].disk_format == "aki"


def test_resolve_fills_references_and_generates_lab_stand_ins(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    old, new = cache / "k1prov-lab-aaa.raw", cache / "k1prov-lab-bbb.raw"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    os.utime(old, (time.time() - 100, time.time() - 100))
    inv = _inv(tmp_path, Images(deploy_kernel=ImageSource(name="k1prov-lab-deploy-kernel"),
                                deploy_ramdisk=ImageSource(name="k1prov-lab-deploy-ramdisk"),
                                user=ImageSource(name="k1prov-lab", checksum="sha256:" + "a" * 64)))
    places = {"lab_dir": str(tmp_path / "lab"), "image_cache": str(cache)}
    images = resolve_images(inv, DEFAULT_CATALOG, places=places)

    assert images.user.file == str(new)                           # the newest build
    assert images.user.checksum == "sha256:" + "a" * 64           # the inventory's field wins
    kernel = Path(images.deploy_kernel.file)
    ramdisk = Path(images.deploy_ramdisk.file)
    assert kernel.read_bytes() == lab_deploy_image_bytes("lab-deploy-kernel")
    assert image_content.detect_formats(kernel.read_bytes()) == ("aki", "aki")
    assert image_content.detect_formats(ramdisk.read_bytes()) == ("ari", "ari")
    # Deterministic: a second resolve leaves identical files (same Glance image reused).
    digest = hashlib.sha256(ramdisk.read_bytes()).hexdigest()
    resolve_images(inv, DEFAULT_CATALOG, places=places)
    assert hashlib.sha256(ramdisk.read_bytes()).hexdigest() == digest


def test_url_entry_keeps_its_checksum_url(tmp_path):
    inv = _inv(tmp_path, Images(user=ImageSource(name="debian-12-genericcloud", bypass_glance=True)))
    user = resolve_images(inv, DEFAULT_CATALOG).user
    assert user.url.endswith("debian-12-genericcloud-amd64.qcow2")
    assert user.checksum_url.endswith("/SHA512SUMS") and user.bypass_glance
    info = image_content.direct_image_info(user)
    assert info == {"image_source": user.url, "image_checksum": user.checksum_url,
                    "image_disk_format": "qcow2"}


def test_inventory_with_files_does_not_read_the_catalog(tmp_path):
    images = Images(user=ImageSource(name="x", file="/nonexistent/x.raw"))
    assert resolve_images(_inv(tmp_path, images), tmp_path / "missing.yaml") is images


def test_unknown_reference_is_located(tmp_path):
    inv = _inv(tmp_path, Images(user=ImageSource(name="nope")))
    with pytest.raises(InventoryError) as err:
        resolve_images(inv, DEFAULT_CATALOG)
    assert err.value.field == "images.user.name" and err.value.file.endswith("inv.yaml")
    assert "debian-12-genericcloud" in str(err.value)


@pytest.mark.parametrize("body, field", [
    ("x: {url: 'https://e/x'}", "images.x.checksum"),
    ("x: {url: 'ftp://e/x', checksum: 'sha256:%s'}" % ("0" * 64), "images.x.url"),
    ("x: {file: a, url: 'https://e/x'}", "images.x"),
    ("x: {file: a, checksum: 'md5:abc'}", "images.x.checksum"),
    ("x: {file: a, disk_format: floppy}", "images.x.disk_format"),
    ("x: {file: a, colour: blue}", "images.x.colour"),
])
def test_bad_entries_are_located(tmp_path, body, field):
    path = tmp_path / "catalog.yaml"
    path.write_text("images:\n  " + body + "\n")
    with pytest.raises(InventoryError) as err:
        load_catalog(path)
    assert err.value.field == field and err.value.file == str(path)


def test_relative_files_are_relative_to_the_catalog(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.raw").write_bytes(b"a")
    path = tmp_path / "catalog.yaml"
    path.write_text("images:\n  a: {file: imgs/a.raw}\n")
    inv = _inv(tmp_path, Images(user=ImageSource(name="a")))
    assert resolve_images(inv, path).user.file == str(tmp_path / "imgs" / "a.raw")


# ---- pure helpers of k1prov.image_content and digest_cache (Glance calls: tests/integration)

def test_parse_checksum():
    assert image_content.parse_checksum("SHA256:" + "AB" * 32) == ("sha256", "ab" * 32)
    assert image_content.parse_checksum("cd" * 64) == ("sha512", "cd" * 64)
    for bad in ("md5:" + "a" * 32, "sha256:xyz", "sha512:" + "a" * 64):
        with pytest.raises(InventoryError):
            image_content.parse_checksum(bad)


def test_checksum_from_sums_files():
    a, b = "1" * 64, "2" * 128
    gnu = f"{'3' * 64}  other.qcow2\n{a} *debian.qcow2\n"
    assert image_content.checksum_from_sums_file(gnu, "debian.qcow2") == ("sha256", a)
    assert image_content.checksum_from_sums_file(f"SHA512 (debian.qcow2) = {b}\n", "debian.qcow2") == ("sha512", b)
    assert image_content.checksum_from_sums_file(f"{a}\n", "ipa.kernel") == ("sha256", a)
    assert image_content.checksum_from_sums_file(gnu, "missing.img") is None


def test_detect_formats():
    assert image_content.detect_formats(b"QFI\xfb" + b"\0" * 100) == ("qcow2", "bare")
    iso = bytearray(40000)
    iso[32769:32774] = b"CD001"
    assert image_content.detect_formats(bytes(iso)) == ("iso", "bare")
    assert image_content.detect_formats(b"\0" * 4096) == ("raw", "bare")
    assert image_content.detect_formats(b"\x28\xb5\x2f\xfd rest") == ("ari", "ari")


def test_direct_image_info_for_a_local_file(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"QFI\xfb" + b"\0" * 1000)
    info = image_content.direct_image_info(ImageSource(name="d", file=str(path)))
    assert info == {"image_source": path.as_uri(), "image_os_hash_algo": "sha256",
                    "image_os_hash_value": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "image_disk_format": "qcow2"}
    with pytest.raises(InventoryError):
        image_content.direct_image_info(ImageSource(name="u", url="https://e/x.raw"))   # no checksum


def test_register_refuses_a_mismatching_file_before_talking_to_glance(tmp_path):
    class NoGlance:
        # Only listing exists: any create or upload would fail with AttributeError.
        class image:
            @staticmethod
            def images(**query):
                return iter(())

    path = tmp_path / "x.raw"
    path.write_bytes(b"abc")
    src = ImageSource(name="x", file=str(path), checksum="sha256:" + "0" * 64)
    with pytest.raises(InventoryError, match="checksum mismatch"):
        glance.register_image(NoGlance(), src, cluster="c", timeout=5, progress=None)


def test_file_digests_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    import hashlib
    import os

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "image.raw"
    f.write_bytes(b"a" * 1000)
    first = digest_cache.hash_file(f, ["sha256"])
    assert first == {"sha256": hashlib.sha256(b"a" * 1000).hexdigest()}
    assert len(list((tmp_path / "cache/k1prov/digests").iterdir())) == 1
    # Same size and mtime but other bytes (as a cache would wrongly trust): the inode and
    # mtime are part of the key, so rewriting the file in place with a new mtime rehashes.
    st = f.stat()
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert digest_cache.hash_file(f, ["sha256"]) == {"sha256": hashlib.sha256(b"b" * 1000).hexdigest()}
    # Unchanged file: the remembered digest is returned (proved by corrupting the file
    # behind the cache's back, keeping size, mtime and inode).
    st = f.stat()
    with f.open("r+b") as h:
        h.write(b"c")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digest_cache.hash_file(f, ["sha256"]) == {"sha256": hashlib.sha256(b"b" * 1000).hexdigest()}
    # Asking for an algorithm it has not computed hashes the file again.
    assert digest_cache.hash_file(f, ["sha512"]) == {"sha512": hashlib.sha512(b"c" + b"b" * 999).hexdigest()}
