import stat

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization

from k1prov.errors import ConfigError
from k1prov.hostkeys import ensure_host_key, write_known_hosts


def test_generates_stores_and_reuses_a_key(tmp_path):
    key = ensure_host_key(tmp_path, "zk1")
    private = tmp_path / "hostkeys/zk1/ssh_host_ed25519_key"
    public = tmp_path / "hostkeys/zk1/ssh_host_ed25519_key.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text() == key.private_openssh
    assert key.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public.read_text().strip() == key.public_line
    assert key.public_line.startswith("ssh-ed25519 ") and key.public_line.endswith(" root@zk1")

    # The public line belongs to the private key.
    loaded = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    derived = loaded.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    assert derived.split()[1] == key.public_blob

    assert ensure_host_key(tmp_path, "zk1") == key                  # reused on the next run
    assert ensure_host_key(tmp_path, "zk2").public_blob != key.public_blob
    renewed = ensure_host_key(tmp_path, "zk1", regenerate=True)
    assert renewed.public_blob != key.public_blob
    assert ensure_host_key(tmp_path, "zk1") == renewed


def test_a_damaged_public_file_is_rewritten(tmp_path):
    key = ensure_host_key(tmp_path, "n1")
    public = tmp_path / "hostkeys/n1/ssh_host_ed25519_key.pub"
    public.write_text("ssh-ed25519 AAAAbogus n1\n")
    assert ensure_host_key(tmp_path, "n1").public_line == key.public_line
    assert public.read_text().strip() == key.public_line


def test_rejects_names_that_escape_the_state_dir(tmp_path):
    with pytest.raises(ConfigError):
        ensure_host_key(tmp_path, "../evil")


def test_known_hosts_is_read_by_paramiko(tmp_path):
    a = ensure_host_key(tmp_path, "a")
    b = ensure_host_key(tmp_path, "b")
    path = write_known_hosts(tmp_path, {"b": ("10.0.0.2", b.public_line), "a": ("10.0.0.1", a.public_line)})
    lines = path.read_text().splitlines()
    assert lines == [f"10.0.0.1,a ssh-ed25519 {a.public_blob}", f"10.0.0.2,b ssh-ed25519 {b.public_blob}"]

    known = paramiko.HostKeys(str(path))
    assert known.lookup("10.0.0.1")["ssh-ed25519"].get_base64() == a.public_blob
    assert known.lookup("b")["ssh-ed25519"].get_base64() == b.public_blob
    assert known.lookup("10.0.0.3") is None

    # Rewritten whole: a node that left the cluster leaves the file.
    write_known_hosts(tmp_path, {"a": ("10.0.0.1", a.public_line)})
    assert paramiko.HostKeys(str(path)).lookup("b") is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".known_hosts")]
