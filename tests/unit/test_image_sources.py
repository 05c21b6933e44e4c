"""k1prov.image_sources: one class per kind of image source, told apart in one place."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from k1prov import context, glance, image_sources
from k1prov.context import VerbContext
from k1prov.errors import ConfigError, InventoryError
from k1prov.image_sources import DirectImage, FileImage, GlanceImage, UrlImage, detect
from k1prov.inventory.model import ImageSource

SHA = "sha256:" + "1" * 64


def test_detect_tells_the_kinds_apart():
    assert isinstance(detect(ImageSource("f", file="/x.raw")), FileImage)
    assert isinstance(detect(ImageSource("u", url="http://h/x.raw")), UrlImage)
    assert isinstance(detect(ImageSource("d", url="http://h/x.raw", checksum=SHA, bypass_glance=True)),
                      DirectImage)
    assert detect(ImageSource("n")) == GlanceImage("n")
    assert detect(ImageSource("both", file="/x.raw", url="http://h/x.raw")) == GlanceImage("both")
    assert [s.through_glance for s in (FileImage(ImageSource("f")), UrlImage(ImageSource("u")),
                                       GlanceImage("n"), DirectImage(ImageSource("d")))] == \
        [True, True, True, False]


def test_a_direct_image_is_handed_to_ironic_not_uploaded():
    src = ImageSource("d", url="http://h/img.qcow2", checksum=SHA, bypass_glance=True)
    reg = detect(src).register(None)
    assert (reg.ref, reg.action, reg.changes, reg.uuid) == \
        ("http://h/img.qcow2", "bypasses glance", ["http://h/img.qcow2"], None)
    info = detect(src).instance_info(None)
    assert info["image_source"] == "http://h/img.qcow2"
    assert (info["image_os_hash_algo"], info["image_os_hash_value"]) == ("sha256", "1" * 64)


def test_an_image_with_neither_or_both_of_file_and_url_cannot_be_registered():
    for src in (ImageSource("n"), ImageSource("both", file="/x", url="http://h/x")):
        with pytest.raises(InventoryError, match="give exactly one of file or url"):
            detect(src).register(None)


@pytest.fixture
def ctx(monkeypatch):
    monkeypatch.setattr(context, "connect", lambda cloud, api_timeout: object())
    return VerbContext(SimpleNamespace(cluster="c", path="inv.yaml", cloud=None))


def test_uploaded_images_deploy_the_newest_active_one_of_their_name(monkeypatch, ctx):
    images = [SimpleNamespace(id="old", status="active", virtual_size=None, size=2**30 + 1),
              SimpleNamespace(id="queued", status="queued", virtual_size=None, size=1),
              SimpleNamespace(id="new", status="active", virtual_size=3 * 2**30, size=1)]
    asked = []
    monkeypatch.setattr(glance, "list_own_images",
                        lambda conn, cluster, name: asked.append((cluster, name)) or images[:2])
    assert FileImage(ImageSource("f", file="/x")).instance_info(ctx) == \
        {"image_source": "old", "root_gb": 2}
    monkeypatch.setattr(glance, "list_own_images", lambda conn, cluster, name: images)
    assert UrlImage(ImageSource("u", url="http://h/x")).instance_info(ctx) == \
        {"image_source": "new", "root_gb": 3}
    assert asked == [("c", "f")]


def test_an_image_not_in_glance_says_to_register_it(monkeypatch, ctx):
    monkeypatch.setattr(glance, "list_own_images", lambda conn, cluster, name: [])
    with pytest.raises(ConfigError, match=r"image 'g' of cluster c is not in Glance \(run `k1prov images"):
        GlanceImage("g").instance_info(ctx)


def test_uploads_go_through_glance_register_image(monkeypatch, ctx):
    seen = {}

    def register_image(conn, src, *, cluster, timeout, progress, visibility):
        seen.update(src=src, cluster=cluster, visibility=visibility)
        return SimpleNamespace(id="img-1", reused=True, checksum=SHA)

    monkeypatch.setattr(image_sources.glance, "register_image", register_image)
    src = ImageSource("f", file="/x.raw")
    reg = detect(src).register(ctx, visibility="public")
    assert (reg.ref, reg.uuid, reg.action, reg.changes) == ("img-1", "img-1", "unchanged", [SHA])
    assert seen == {"src": src, "cluster": "c", "visibility": "public"}


def test_each_kind_checks_itself_before_glance_is_asked(tmp_path):
    """What the preflight (`inventory check`, `images register`) refuses, per kind."""
    present = tmp_path / "x.raw"
    present.write_bytes(b"disk")
    for src in (ImageSource("n"), ImageSource("both", file=str(present), url="http://h/x"),
                ImageSource("d", bypass_glance=True, checksum=SHA)):
        with pytest.raises(InventoryError, match="give exactly one of file or url") as exc:
            detect(src).check("images.user")
        assert exc.value.field == "images.user"
    for src in (ImageSource("f", file=str(present), checksum="md5:nothex"),
                ImageSource("u", url="http://h/x", checksum="md5:nothex"),
                ImageSource("d", url="http://h/x", checksum="md5:nothex", bypass_glance=True)):
        with pytest.raises(InventoryError) as exc:
            detect(src).check("images.user")
        assert exc.value.field == "images.user.checksum"
    with pytest.raises(InventoryError, match="bypasses Glance needs a checksum") as exc:
        detect(ImageSource("d", url="http://h/x", bypass_glance=True)).check("images.user")
    assert exc.value.field == "images.user.checksum"
    # Good ones pass: a file that bypasses Glance is hashed by k1prov, so needs no checksum.
    for src in (ImageSource("f", file=str(present)), ImageSource("u", url="http://h/x", checksum=SHA),
                ImageSource("d", file=str(present), bypass_glance=True)):
        detect(src).check("images.user")


def test_only_a_local_file_can_be_missing(tmp_path):
    gone = str(tmp_path / "not-built-yet.raw")
    assert detect(ImageSource("f", file=gone)).missing_file() == gone
    assert detect(ImageSource("d", file=gone, bypass_glance=True)).missing_file() == gone
    (tmp_path / "not-built-yet.raw").write_bytes(b"disk")
    assert detect(ImageSource("f", file=gone)).missing_file() is None
    assert detect(ImageSource("u", url="http://h/x")).missing_file() is None
    assert GlanceImage("n").missing_file() is None
