"""Finding the lab's Mesos build: a tarball and its checksum, or a plain reason it is off."""
from __future__ import annotations

import hashlib

from k1prov.lab.mesos import MESOS_DIR_ENV, find_mesos_build, mesos_off_reason


def test_a_build_with_its_checksum_is_found(tmp_path):
    tarball = tmp_path / "mesos-1.12.0-x.tar.xz"
    tarball.write_bytes(b"not really xz")
    sha = hashlib.sha512(tarball.read_bytes()).hexdigest()
    (tmp_path / "SHA512SUMS").write_text(f"{sha}  {tarball.name}\n")
    build = find_mesos_build(str(tmp_path))
    assert build is not None and build.tarball == tarball and build.sha512 == sha
    assert mesos_off_reason(str(tmp_path)) == ""
    settings = build.role_settings("http://10.0.0.1:8088/mesos/")
    assert settings["source"] == "tarball" and settings["sha512"] == sha
    assert settings["url"] == f"http://10.0.0.1:8088/mesos/{tarball.name}"


def test_mesos_is_off_with_a_reason(tmp_path, monkeypatch):
    assert mesos_off_reason(str(tmp_path / "nowhere")).startswith("Mesos is off in the lab: no Mesos build at ")
    assert find_mesos_build(str(tmp_path)) is None
    assert "expected one Mesos build tarball, found 0" in mesos_off_reason(str(tmp_path))
    (tmp_path / "m.tar.xz").write_bytes(b"x")
    assert mesos_off_reason(str(tmp_path)).endswith("no SHA512SUMS beside m.tar.xz")
    (tmp_path / "SHA512SUMS").write_text(f"{'0' * 128}  other.tar.xz\n")
    assert mesos_off_reason(str(tmp_path)).endswith("no sha512 for m.tar.xz")
    monkeypatch.setenv(MESOS_DIR_ENV, "off")
    assert mesos_off_reason() == f"Mesos is off in the lab: {MESOS_DIR_ENV}=off"


def test_publish_puts_the_build_at_its_own_name_and_the_fixed_one_with_sums(tmp_path):
    from k1prov.lab.mesos import published_sums, published_url, publish
    from k1prov.roles.role_settings import sha512_from_file

    build_dir = tmp_path / "build"
    build_dir.mkdir()
    (build_dir / "m.tar.xz").write_bytes(b"build bytes")
    sha = hashlib.sha512(b"build bytes").hexdigest()
    (build_dir / "SHA512SUMS").write_text(f"{sha}  m.tar.xz\n")
    http = tmp_path / "http"
    (http / "mesos").mkdir(parents=True)
    (http / "mesos" / "old-build.tar.xz").write_bytes(b"an earlier build")
    build, where = publish(http, str(build_dir))
    assert build is not None and where == "mesos/lab-build"
    assert (http / "mesos" / "m.tar.xz").read_bytes() == b"build bytes"
    assert (http / "mesos" / "lab-build").read_bytes() == b"build bytes"
    assert not (http / "mesos" / "old-build.tar.xz").exists()
    assert published_sums(http).read_text() == f"{sha}  m.tar.xz\n{sha}  lab-build\n"
    # What a lab inventory's roles.mesos.sha512_file gives for roles.mesos.url.
    url = published_url("http://10.0.0.1:8088")
    assert url == "http://10.0.0.1:8088/mesos/lab-build"
    never = lambda reason: (_ for _ in ()).throw(AssertionError(reason))  # noqa: E731
    assert sha512_from_file(str(published_sums(http)), url, never) == sha
    assert publish(http, str(build_dir))[1] == where   # again: nothing to do
    # Off: nothing of it is served any more (an inventory naming it is refused, not served a stale build).
    off, reason = publish(http, "off")
    assert off is None and reason == f"Mesos is off in the lab: {MESOS_DIR_ENV}=off"
    assert not (http / "mesos").exists()
