"""Pinned host keys (k1prov.ssh._pin_host_keys): what a connection is told to accept, read
from the cluster's known_hosts once however many connections use it. No network."""
from __future__ import annotations

import os

import paramiko
import pytest

from k1prov import ssh
from k1prov.errors import TransportError


def _key_line(names: str) -> tuple[str, paramiko.PKey]:
    key = paramiko.ECDSAKey.generate()
    return f"{names} {key.get_name()} {key.get_base64()}\n", key


def _accepted(known_hosts, *, host: str, address: str, port: int = 22) -> dict:
    client = paramiko.SSHClient()
    ssh._pin_host_keys(client, known_hosts, host, address, port)
    entry = client.get_host_keys().lookup(ssh._known_name(address, port))
    return {t: k.get_base64() for t, k in entry.items()} if entry else {}


def test_entries_by_address_or_by_name_hashed_or_not(tmp_path):
    by_address, k1 = _key_line("10.0.0.1,w01")
    by_name, k2 = _key_line("w02")
    on_port, k3 = _key_line("[10.0.0.3]:2222")
    hashed, k4 = _key_line(paramiko.HostKeys.hash_host("10.0.0.4"))
    known = tmp_path / "known_hosts"
    known.write_text("# pinned\n" + by_address + by_name + on_port + hashed + "garbage line\n")
    ecdsa = k1.get_name()
    assert _accepted(known, host="w01", address="10.0.0.1") == {ecdsa: k1.get_base64()}
    assert _accepted(known, host="w02", address="10.0.0.2") == {ecdsa: k2.get_base64()}
    assert _accepted(known, host="w03", address="10.0.0.3", port=2222) == {ecdsa: k3.get_base64()}
    assert _accepted(known, host="w04", address="10.0.0.4") == {ecdsa: k4.get_base64()}
    assert _accepted(known, host="w05", address="10.0.0.5") == {}


def test_the_file_is_read_once_for_many_connections_and_again_when_rewritten(tmp_path):
    lines, keys = zip(*(_key_line(f"10.1.{i // 250}.{i % 250},n{i}") for i in range(500)))
    known = tmp_path / "known_hosts"
    known.write_text("".join(lines))
    ssh._read_pinned.cache_clear()
    for i in range(0, 500, 5):
        assert _accepted(known, host=f"n{i}", address="192.0.2.1") == {
            keys[i].get_name(): keys[i].get_base64()}
    assert ssh._read_pinned.cache_info().misses == 1
    # Deploy pins a new key for n0: the next connection reads the new file.
    fresh, new_key = _key_line("n0")
    known.write_text(fresh + "".join(lines[1:]))
    os.utime(known, ns=(1, 1))      # another mtime even within the clock's resolution
    assert _accepted(known, host="n0", address="192.0.2.1") == {
        new_key.get_name(): new_key.get_base64()}
    assert ssh._read_pinned.cache_info().misses == 2


def test_a_missing_file_is_the_hosts_error(tmp_path):
    with pytest.raises(TransportError, match="cannot read pinned host keys"):
        _accepted(tmp_path / "nope", host="w01", address="10.0.0.1")
