"""A changed Redfish login is tried against the BMC before Ironic gets it (issue 21), against
a real sushy-tools BMC: its fake system driver, which needs no libvirt and no VM (the VM
lab's libvirtd is one per machine; this file runs beside a VM lab that another session
holds). The BMC checks the login with its htpasswd file (bcrypt) as the VM lab's does.

Real: Ironic 39's `redfish` hardware type (sushy) checking the BMC on its way to
manageable; k1prov's Redfish GET with the new login; sushy-tools' 401. The netns lab is
its own (one machine, none enrolled here), without automated cleaning: the fake system
boots nothing. About a minute. Needs the VM lab's venv (`lab up --kind vm` installs it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from lab_fixture import beside_session_lab, bring_up, session_port_offset
from labhosts import IRONIC_API_VERSION, assert_a_refused_new_redfish_login_changes_nothing, lab_connection

from k1prov.fanout import Status
from k1prov.inventory import load_inventory
from k1prov.lab import Lab
from k1prov.lab.vm_bmc import sushy_htpasswd
from k1prov.provisioner import Provisioner

pytestmark = pytest.mark.lab

CLUSTER = "rflogin"
NODE = "rfl01"
SYSTEM_UUID = "27946b59-9e44-4fa7-8e91-f3527a1ef094"
SYSTEM = f"/redfish/v1/Systems/{SYSTEM_UUID}"
USER, PASSWORD = "admin", "the-bmc-password"
# Ports: the session lab's offset plus this (the other labs of a whole run: +300 auth,
# +500 conductors, +700 test_lab_redfish).
PORT_SHIFT = 760
SUSHY_PORT = 8000
START_TIMEOUT = 60.0


# Read at import, before tests/conftest.py points HOME at a temporary directory (as
# test_lab_vm.py does): the VM lab's venv is installed once, in the real user's cache.
_VENV = Path(os.environ.get("K1PROV_VM_LAB_VENV") or "~/.cache/k1prov/vm-lab-venv").expanduser()


@pytest.fixture(scope="module")
def bmc(tmp_path_factory):
    """sushy-emulator --fake on 127.0.0.1, one system, the login in an htpasswd file."""
    venv = _VENV
    if not (venv / "bin" / "sushy-emulator").exists():
        pytest.skip(f"no sushy-emulator in {venv} (`k1prov lab up --kind vm` installs it)")
    d = tmp_path_factory.mktemp("sushy")
    port = SUSHY_PORT + session_port_offset() + PORT_SHIFT
    htpasswd = d / "htpasswd"
    sushy_htpasswd(venv, htpasswd, username=USER, password=PASSWORD, timeout=START_TIMEOUT)
    conf = d / "emulator.conf"
    conf.write_text(f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n"
                    f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}\n"
                    f"SUSHY_EMULATOR_STATE_DIR = {str(d / 'state')!r}\n"
                    f"SUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': {SYSTEM_UUID!r}, 'name': 'rfl01', "
                    f"'power_state': 'Off', 'external_notifier': False, "
                    f"'nics': [{{'mac': '52:54:00:fe:ee:01', 'ip': '10.245.0.251'}}]}}]\n")
    log = (d / "sushy.log").open("w")
    proc = subprocess.Popen([str(venv / "bin" / "sushy-emulator"), "--config", str(conf), "--fake"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, (d / "sushy.log").read_text()
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                        f"{url}/redfish/v1/", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "sushy-emulator did not answer"
            time.sleep(0.3)
        yield {"url": url, "dir": d}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def env(bmc, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts)")
    root = tmp_path_factory.mktemp("rfllab")
    s = beside_session_lab(root, shift=PORT_SHIFT, automated_clean=False)
    lab = Lab(s)
    bring_up(lab)
    d = bmc["dir"]
    (d / "password").write_text(PASSWORD + "\n")
    inv = d / "rfl.yaml"
    inv.write_text(f"""\
cluster: {CLUSTER}
cloud: {{ironic_url: "{s.ironic_url}", glance_url: "{s.glance_url}"}}
nodes:
  - name: {NODE}
    driver: redfish
    interfaces: {{boot: pxe, deploy: direct}}
    bmc: {{url: "{bmc['url']}", system_id: "{SYSTEM}", username: {USER}, verify: false,
           password: {{file: "{d / 'password'}"}}}}
    macs: ["52:54:00:fe:ee:01"]
    address: 10.245.0.251
""")
    try:
        yield {"inv": inv, "dir": d, "conn": lab_connection(s, api_version=IRONIC_API_VERSION),
               "url": bmc["url"]}
    finally:
        try:
            Provisioner(load_inventory(inv)).delete_nodes()
        finally:
            lab.down()


def test_enroll_checks_the_fake_systems_bmc(env):
    report = Provisioner(load_inventory(env["inv"])).enroll()
    (row,) = report.outcomes
    assert (row.status, row.provision_state) == (Status.OK, "available"), row


def test_a_changed_redfish_password_the_bmc_refuses_leaves_the_node_as_it_was(env, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("a-new-but-wrong-password\n")
    inv = tmp_path / "changed.yaml"
    inv.write_text(env["inv"].read_text().replace(str(env["dir"] / "password"), str(wrong)))
    assert_a_refused_new_redfish_login_changes_nothing(env["conn"], NODE, env["inv"], inv,
                                                        f"{env['url']}{SYSTEM}", "a-new-but-wrong-password")


def test_a_changed_login_the_bmc_takes_goes_to_ironic(env, tmp_path):
    """Without system_id (the BMC's only system): the login is tried on the Systems
    collection, the BMC takes it, and Ironic gets the change."""
    inv = tmp_path / "no-system.yaml"
    inv.write_text(env["inv"].read_text().replace(f'system_id: "{SYSTEM}", ', ""))
    report = Provisioner(load_inventory(inv)).enroll()
    (row,) = report.outcomes
    assert row.status is Status.OK, row.error
    assert row.changes == ["driver_info.redfish_system_id removed"], row.changes
    assert "redfish_system_id" not in env["conn"].baremetal.get_node(row.uuid).driver_info
