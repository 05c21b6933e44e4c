"""k1prov.glance against a real Glance (gunicorn + glance.wsgi.api, file store, sqlite, no Keystone).

The Glance comes from the lab's virtualenv (K1PROV_LAB_VENV, default
~/.cache/k1prov/lab-venv); the tests are skipped when it is not installed.
Image sources served over http come from a local http.server on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from k1prov import glance
from k1prov.cloud import connect
from k1prov.errors import CloudError, InventoryError
from k1prov.inventory.model import Cloud, ImageSource

pytestmark = pytest.mark.lab

LAB_VENV = Path(os.environ.get("K1PROV_LAB_VENV", "~/.cache/k1prov/lab-venv")).expanduser()
START_TIMEOUT = 60.0

GLANCE_PASTE = """\
[composite:glance-api]
paste.composite_factory = glance.api:root_app_factory
/: api

[composite:api]
paste.composite_factory = glance.api:pipeline_factory
default = versionnegotiation unauthenticated-context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:unauthenticated-context]
paste.filter_factory = glance.api.middleware.context:UnauthenticatedContextMiddleware.factory
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_glance_config(root: Path) -> Path:
    conf_dir = root / "etc"
    for sub in ("etc", "images", "staging", "tasks"):
        (root / sub).mkdir(parents=True)
    (conf_dir / "glance-api-paste.ini").write_text(GLANCE_PASTE)
    # No Keystone: every request carries an admin context without roles, which
    # Glance's role-based defaults do not recognise as admin.
    (conf_dir / "policy.yaml").write_text('"context_is_admin": "@"\n"publicize_image": ""\n')
    (conf_dir / "glance-api.conf").write_text(f"""\
[DEFAULT]
enabled_backends = local:file
[database]
connection = sqlite:///{root}/glance.sqlite
[paste_deploy]
config_file = {conf_dir}/glance-api-paste.ini
[glance_store]
default_backend = local
[local]
filesystem_store_datadir = {root}/images
[os_glance_staging_store]
filesystem_store_datadir = {root}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {root}/tasks
[oslo_policy]
policy_file = {conf_dir}/policy.yaml
""")
    return conf_dir


@pytest.fixture(scope="module")
def glance_url(tmp_path_factory):
    gunicorn = LAB_VENV / "bin" / "gunicorn"
    if not (gunicorn.exists() and (LAB_VENV / "bin" / "glance-manage").exists()):
        pytest.skip(f"no Glance in the lab venv {LAB_VENV} (set K1PROV_LAB_VENV)")
    root = tmp_path_factory.mktemp("glance")
    conf_dir = _write_glance_config(root)
    env = {**os.environ, "OS_GLANCE_CONFIG_DIR": str(conf_dir)}
    subprocess.run([str(LAB_VENV / "bin" / "glance-manage"), "--config-dir", str(conf_dir), "db_sync"],
                   env=env, check=True, capture_output=True, timeout=START_TIMEOUT)
    port = _free_port()
    log = (root / "glance.log").open("wb")
    proc = subprocess.Popen([str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "1",
                             "--threads", "4", "glance.wsgi.api:application"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        import requests
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"glance exited: {(root / 'glance.log').read_text()[-2000:]}")
            try:
                if requests.get(url + "/v2/images", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("glance did not start in time")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


@pytest.fixture()
def conn(glance_url):
    c = connect(Cloud(glance_url=glance_url), api_timeout=30)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory):
    """A directory served over http://127.0.0.1:PORT/ by a thread of this process."""
    root = tmp_path_factory.mktemp("http")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _sha(data: bytes, algo: str = "sha256") -> str:
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _payload(seed: bytes, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def _upload_count(conn, cluster, name):
    return [img.id for img in glance.list_own_images(conn, cluster, name=name)]


def test_register_file_is_idempotent_and_tags(conn, tmp_path):
    data = _payload(b"a", 3 * 1024 * 1024 + 17)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    src = ImageSource(name="user-image", file=str(path), checksum=_sha(data))
    calls = []

    first = glance.register_image(conn, src, cluster="c1", timeout=120,
                                  progress=lambda done, total: calls.append((done, total)))
    assert not first.reused
    assert first.checksum == _sha(data, "sha512")     # Glance's own hash of what it stored
    assert calls and calls[-1] == (len(data), len(data))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    image = conn.image.get_image(first.id)
    assert {"k1prov", "k1prov-cluster:c1"} <= set(image.tags)
    assert image.disk_format == "raw" and image.container_format == "bare"
    assert image.properties["k1prov_source_checksum"] == _sha(data)
    updated_before = image.updated_at

    calls.clear()
    second = glance.register_image(conn, src, cluster="c1", timeout=120,
                                   progress=lambda done, total: calls.append((done, total)))
    assert second.reused and second.id == first.id
    assert calls == []                                   # no second upload
    assert conn.image.get_image(first.id).updated_at == updated_before
    assert _upload_count(conn, "c1", "user-image") == [first.id]

    # Another cluster does not see (nor reuse) c1's image.
    other = glance.register_image(conn, src, cluster="c2", timeout=120, progress=None)
    assert other.id != first.id and not other.reused
    assert [i.id for i in glance.list_own_images(conn, "c1")] == [first.id]


def test_changed_bytes_make_a_new_image_and_keep_the_old(conn, tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(_payload(b"v1", 200_000))
    v1 = glance.register_image(conn, ImageSource(name="evolving", file=str(path)), cluster="c3",
                               timeout=120, progress=None)
    path.write_bytes(_payload(b"v2", 200_000))
    v2 = glance.register_image(conn, ImageSource(name="evolving", file=str(path)), cluster="c3",
                               timeout=120, progress=None)
    assert v2.id != v1.id and not v2.reused
    assert _upload_count(conn, "c3", "evolving") == [v1.id, v2.id]
    # Registering v2 again reuses v2, not v1.
    assert glance.register_image(conn, ImageSource(name="evolving", file=str(path)), cluster="c3",
                                 timeout=120, progress=None).id == v2.id

    # The old image stays beside the new one until the cluster's images are deleted.
    assert glance.delete_own_images(conn, "c3") == [v1.id, v2.id]
    assert glance.list_own_images(conn, "c3") == []


def test_local_checksum_mismatch_is_refused_before_upload(conn, tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(b"x" * 5000)
    src = ImageSource(name="bad-local", file=str(path), checksum=_sha(b"something else"))
    with pytest.raises(InventoryError, match="checksum mismatch"):
        glance.register_image(conn, src, cluster="c4", timeout=60, progress=None)
    assert [img.id for img in conn.image.images(name="bad-local")] == []


def test_url_source_streams_and_mismatch_deletes_the_image(conn, http_dir):
    root, base = http_dir
    data = _payload(b"q", 150_000)
    good = b"\x1f\x8b" + _payload(b"ramdisk", 100_000)
    (root / "ramdisk.bin").write_bytes(good)
    (root / "wrong.img").write_bytes(data)
    (root / "SHA256SUMS").write_text(f"{hashlib.sha256(b'other').hexdigest()}  other.bin\n"
                                     f"{hashlib.sha256(good).hexdigest()}  ramdisk.bin\n")

    src = ImageSource(name="deploy-ramdisk", url=f"{base}/ramdisk.bin", checksum_url=f"{base}/SHA256SUMS")
    calls = []
    first = glance.register_image(conn, src, cluster="c5", timeout=60,
                                  progress=lambda done, total: calls.append((done, total)))
    image = conn.image.get_image(first.id)
    assert (image.disk_format, image.container_format) == ("ari", "ari")
    assert calls[-1] == (len(good), len(good))
    assert glance.register_image(conn, src, cluster="c5", timeout=60, progress=None).reused

    bad = ImageSource(name="liar", url=f"{base}/wrong.img", checksum=_sha(b"not these bytes"),
                      disk_format="raw")
    with pytest.raises(CloudError, match="checksum mismatch") as err:
        glance.register_image(conn, bad, cluster="c5", timeout=60, progress=None)
    assert err.value.service == "glance"
    assert [img.id for img in conn.image.images(name="liar")] == []


def test_url_without_checksum_is_compared_by_content(conn, http_dir):
    root, base = http_dir
    (root / "plain.raw").write_bytes(_payload(b"plain", 70_000))
    src = ImageSource(name="plain", url=f"{base}/plain.raw")
    first = glance.register_image(conn, src, cluster="c6", timeout=60, progress=None)
    again = glance.register_image(conn, src, cluster="c6", timeout=60, progress=None)
    assert again.reused and again.id == first.id
    assert glance.delete_own_images(conn, "c6") == [first.id]


def test_glance_refusal_becomes_cloud_error(conn, tmp_path):
    path = tmp_path / "fake.qcow2"
    path.write_bytes(b"not a qcow2 at all" * 100)
    src = ImageSource(name="claims-qcow2", file=str(path), disk_format="qcow2")
    with pytest.raises(CloudError) as err:
        glance.register_image(conn, src, cluster="c7", timeout=60, progress=None)
    assert err.value.service == "glance"
    assert "HTTP 415" in str(err.value)
    assert glance.list_own_images(conn, "c7") == []


def test_unreachable_glance_is_cloud_error(tmp_path):
    c = connect(Cloud(glance_url=f"http://127.0.0.1:{_free_port()}"), api_timeout=5)
    path = tmp_path / "x.raw"
    path.write_bytes(b"x")
    with pytest.raises(CloudError) as err:
        glance.register_image(c, ImageSource(name="x", file=str(path)), cluster="c8", timeout=10,
                              progress=None)
    assert err.value.service == "glance"
    shutil.rmtree(tmp_path, ignore_errors=True)
