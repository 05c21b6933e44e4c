"""The VM lab (`k1prov lab up --kind vm`): real QEMU machines behind real BMC emulators.

Through the CLI, as an operator runs it: two machines, one behind virtualbmc (IPMI, driven
with ipmitool) and one behind sushy-tools (Redfish, driven over HTTP). Each BMC powers its
machine on and off and sets its boot device, and libvirt shows the change; a machine powered
on network-boots and leases its address from the lab's dnsmasq; `lab down --kind vm` leaves
nothing behind. Then a deploy as on a rack: `k1prov deploy` on both machines at once (one
behind IPMI, one behind Redfish): Ironic powers them on, they iPXE-boot the real agent
ramdisk, the agent writes the user image, and each boots it from its disk with the hostname
of its config drive and answers SSH; then `undeploy`. The file prints each step's time.

Under TCG (no usable KVM) the agent's lookup comes 3-5 minutes after power-on and the whole
deploy takes about 10 minutes. It needs the agent ramdisk and the user image already built
(scripts/vm-lab/build-ipa-ramdisk.sh, build-user-image.sh; skipped with that reason otherwise).

Under TCG (no usable KVM) a machine reaches its DHCP in seconds; the file takes about a
minute. Its own bridge, subnet and ports: K1PROV_TEST_VM_LAB_BRIDGE, _CIDR and _PORT_OFFSET
(default k1pvmt0, 10.249.0.1/24, offset 20000: IPMI 37230+, vbmcd 37291, Redfish 38000).
Run alone with `pytest -m vm`.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.lab import procs
from k1prov.lab.vm import VmLab, VmLabSettings
from k1prov.lab.vm_net import acks

pytestmark = [pytest.mark.vm]

# From power-on to the NIC ROM's DHCPACK: 3-5 s under TCG on an idle machine; a loaded
# 2-core machine is slower, so this is only the point where the test gives up.
DHCP_WAIT = 240.0
# A BMC's power or boot-device change reaching libvirt (milliseconds; a bound, not a goal).
STATE_WAIT = 60.0
# The deploy test, its fixture included (a bound, not a goal; see the test).
DEPLOY_TEST_TIMEOUT = 2700

# Read at import, before tests/conftest.py points HOME at a temporary directory: the VM lab's
# venv (virtualbmc, sushy-tools, libvirt-python) is installed once, in the real user's cache.
_VENV = os.environ.get("K1PROV_VM_LAB_VENV") or str(Path("~/.cache/k1prov/vm-lab-venv").expanduser())
_IPA_CACHE = os.environ.get("K1PROV_IPA_CACHE") or str(Path("~/.cache/k1prov/ipa-ramdisk").expanduser())

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _why_not() -> str:
    if os.geteuid() != 0:
        return "the VM lab needs root"
    for prog, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("virsh", "libvirt-clients"),
                      ("dnsmasq", "dnsmasq-base"), ("ipmitool", "ipmitool")):
        if not shutil.which(prog) and not Path("/usr/sbin", prog).exists():
            return f"QEMU cannot run here: no {prog} (apt-get install {pkg}; scripts/install.sh)"
    if not Path("/usr/sbin/libvirtd").exists():
        return "QEMU cannot run here: no libvirtd (apt-get install libvirt-daemon; scripts/install.sh)"
    try:
        subprocess.run(["qemu-system-x86_64", "-version"], check=True, capture_output=True, timeout=30)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"QEMU cannot run here: {exc}"
    return ""


@pytest.fixture(scope="module")
def vm_env(tmp_path_factory):
    why = _why_not()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("vmlab")
    env = {
        "K1PROV_VM_LAB_DIR": str(root),
        "K1PROV_VM_LAB_VENV": _VENV,
        "K1PROV_VM_LAB_BRIDGE": os.environ.get("K1PROV_TEST_VM_LAB_BRIDGE", "k1pvmt0"),
        "K1PROV_VM_LAB_CIDR": os.environ.get("K1PROV_TEST_VM_LAB_CIDR", "10.249.0.1/24"),
        "K1PROV_VM_LAB_PORT_OFFSET": os.environ.get("K1PROV_TEST_VM_LAB_PORT_OFFSET", "20000"),
        # Its own clouds.yaml (the session's OS_CLIENT_CONFIG_FILE may be another lab's).
        "K1PROV_VM_LAB_CLOUDS_YAML": str(root / "clouds.yaml"),
        "K1PROV_IPA_CACHE": _IPA_CACHE,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        # Whatever a failed test left running goes (idempotent after test_down).
        _cli("lab", "down", "--kind", "vm")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(*argv: str):
    return CliRunner().invoke(app, list(argv))


@pytest.fixture(scope="module")
def vm_lab(vm_env):
    t0 = time.monotonic()
    result = _cli("lab", "up", "--kind", "vm", "--nodes", "2")
    assert result.exit_code == 0, result.output
    print(f"\nlab up --kind vm: {time.monotonic() - t0:.1f} s")
    return VmLab(VmLabSettings.default())


def _status() -> dict:
    result = _cli("lab", "status", "--kind", "vm", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _machine(kind: str) -> dict:
    return next(m for m in _status()["machines"] if m["bmc"]["type"] == kind)


def _ipmi(lab: VmLab, machine: dict, *args: str) -> str:
    bmc = machine["bmc"]
    out = subprocess.run(["ipmitool", "-I", "lanplus", "-H", bmc["address"], "-p", str(bmc["port"]),
                          "-U", bmc["username"], "-E", "-N", "2", "-R", "3", *args],
                         env={**os.environ, "IPMI_PASSWORD": lab.bmc_password()},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"ipmitool {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


def _basic_auth() -> str:
    # The Redfish emulator asks for the lab's BMC login (the IPMI BMCs' user and password).
    s = VmLabSettings.default()
    token = base64.b64encode(f"{s.bmc_username}:{VmLab(s).bmc_password()}".encode()).decode()
    return f"Basic {token}"


def _redfish(machine: dict, method: str = "GET", path: str = "", body: dict | None = None) -> dict:
    url = machine["bmc"]["url"] + machine["bmc"]["system"] + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": _basic_auth()})
    with _NO_PROXY.open(req, timeout=60) as resp:
        text = resp.read()
    return json.loads(text) if text else {}


def _wait_state(lab: VmLab, name: str, want: str) -> None:
    deadline = time.monotonic() + STATE_WAIT
    while (state := lab.libvirt.state(name)) != want:
        assert time.monotonic() < deadline, f"{name} is {state!r}, not {want!r}"
        time.sleep(0.2)


def _first_boot_device(lab: VmLab, name: str) -> str:
    """'network', 'hd' or 'cdrom': what the domain boots from first. virtualbmc writes
    <os><boot dev=.../></os>; sushy-tools writes <boot order='1'/> into the device."""
    dom = ElementTree.fromstring(lab.libvirt.virsh("dumpxml", "--inactive", name))
    os_boot = dom.findall("./os/boot")
    if os_boot:
        return os_boot[0].get("dev")
    for dev in dom.find("devices"):
        boot = dev.find("boot")
        if boot is not None and boot.get("order") == "1":
            return "network" if dev.tag == "interface" else {"disk": "hd"}.get(dev.get("device"), dev.get("device"))
    raise AssertionError(f"{name} has no boot device")


def _wait_dhcp(lab: VmLab, machine: dict, *, before: int, t0: float) -> float:
    """Seconds from power-on to a new DHCPACK for the machine's MAC in dnsmasq's log."""
    deadline = time.monotonic() + DHCP_WAIT
    while len(acks(lab.settings.dnsmasq_log, machine["mac"])) <= before:
        assert time.monotonic() < deadline, (
            f"{machine['name']} got no DHCP lease; dnsmasq log {lab.settings.dnsmasq_log}")
        time.sleep(0.2)
    return time.monotonic() - t0


def _rss_mib(name: str) -> float:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                if b"qemu-system" in cmd and f"guest={name},".encode() in cmd:
                    for line in (entry / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            return int(line.split()[1]) / 1024
            except OSError:
                continue
    return 0.0


def test_up_brings_both_bmcs_up(vm_lab):
    st = _status()
    assert st["ok"] and st["kind"] == "vm"
    assert [s["name"] for s in st["services"] if s["running"] and s["answers"]] == \
        ["libvirtd", "dnsmasq", "vbmcd", "sushy", "http", "glance", "ironic"]
    # Its clouds.yaml entry names its own Ironic (http_basic, as Bifrost runs it).
    import yaml

    clouds = yaml.safe_load(Path(os.environ["K1PROV_VM_LAB_CLOUDS_YAML"]).read_text())["clouds"]
    assert clouds["k1prov-lab-vm"]["auth_type"] == "http_basic"
    assert clouds["k1prov-lab-vm"]["baremetal_endpoint_override"] == vm_lab.settings.ironic_settings().ironic_url
    kinds = sorted(m["bmc"]["type"] for m in st["machines"])
    assert kinds == ["ipmi", "redfish"]
    for m in st["machines"]:
        assert m["state"] == "shut off"           # a rack machine waits for its BMC
        assert m["serial_log"].startswith(str(vm_lab.settings.serial_dir))
    assert _ipmi(vm_lab, _machine("ipmi"), "power", "status") == "Chassis Power is off"
    redfish = _machine("redfish")
    assert _redfish(redfish)["PowerState"] == "Off"
    # sushy serves the lab's Redfish machine only, not the IPMI one on the same libvirtd.
    systems = redfish["bmc"]["url"] + "/redfish/v1/Systems"
    with _NO_PROXY.open(urllib.request.Request(systems, headers={"Authorization": _basic_auth()}),
                        timeout=60) as resp:
        members = json.loads(resp.read())["Members"]
    assert [x["@odata.id"] for x in members] == [redfish["bmc"]["system"]]
    # Without the login (or with a wrong one) it refuses, as a real BMC does.
    with pytest.raises(urllib.error.HTTPError) as refused:
        _NO_PROXY.open(systems, timeout=60)
    assert refused.value.code == 401


def test_ipmi_sets_boot_device_and_power_and_the_machine_leases_an_address(vm_lab):
    m = _machine("ipmi")
    _ipmi(vm_lab, m, "chassis", "bootdev", "disk")
    assert _first_boot_device(vm_lab, m["name"]) == "hd"
    _ipmi(vm_lab, m, "chassis", "bootdev", "pxe")
    assert _first_boot_device(vm_lab, m["name"]) == "network"
    before = len(acks(vm_lab.settings.dnsmasq_log, m["mac"]))
    t0 = time.monotonic()
    _ipmi(vm_lab, m, "power", "on")
    _wait_state(vm_lab, m["name"], "running")
    assert _ipmi(vm_lab, m, "power", "status") == "Chassis Power is on"
    took = _wait_dhcp(vm_lab, m, before=before, t0=t0)
    print(f"\n{m['name']} (IPMI): DHCPACK {took:.1f} s after power on, QEMU RSS {_rss_mib(m['name']):.0f} MiB")
    assert _status()["machines"][0]["lease"] == m["address"]
    _ipmi(vm_lab, m, "power", "off")
    _wait_state(vm_lab, m["name"], "shut off")


def test_redfish_sets_boot_device_and_power_and_the_machine_leases_an_address(vm_lab):
    m = _machine("redfish")
    _redfish(m, "PATCH", body={"Boot": {"BootSourceOverrideTarget": "Hdd",
                                        "BootSourceOverrideEnabled": "Continuous"}})
    assert _first_boot_device(vm_lab, m["name"]) == "hd"
    assert _redfish(m)["Boot"]["BootSourceOverrideTarget"] == "Hdd"
    _redfish(m, "PATCH", body={"Boot": {"BootSourceOverrideTarget": "Pxe",
                                        "BootSourceOverrideEnabled": "Continuous"}})
    assert _first_boot_device(vm_lab, m["name"]) == "network"
    before = len(acks(vm_lab.settings.dnsmasq_log, m["mac"]))
    t0 = time.monotonic()
    _redfish(m, "POST", "/Actions/ComputerSystem.Reset", {"ResetType": "On"})
    _wait_state(vm_lab, m["name"], "running")
    assert _redfish(m)["PowerState"] == "On"
    took = _wait_dhcp(vm_lab, m, before=before, t0=t0)
    print(f"\n{m['name']} (Redfish): DHCPACK {took:.1f} s after power on, "
          f"QEMU RSS {_rss_mib(m['name']):.0f} MiB")
    _redfish(m, "POST", "/Actions/ComputerSystem.Reset", {"ResetType": "ForceOff"})
    _wait_state(vm_lab, m["name"], "shut off")


def _images_why_not() -> str:
    from k1prov.imagecatalog import DEFAULT_CATALOG, entry_source, load_catalog
    from k1prov.lab.vm_inventory import VM_DEPLOY_KERNEL, VM_DEPLOY_RAMDISK, VM_USER_IMAGE

    catalog = load_catalog(DEFAULT_CATALOG)
    for name, recipe in ((VM_DEPLOY_KERNEL, "build-ipa-ramdisk.sh"), (VM_DEPLOY_RAMDISK, "build-ipa-ramdisk.sh"),
                         (VM_USER_IMAGE, "build-user-image.sh")):
        try:
            entry_source(catalog[name], catalog_dir=Path(DEFAULT_CATALOG).parent)
        except Exception as exc:  # noqa: BLE001 - any reason the file is not there
            return f"image {name} not built (scripts/vm-lab/{recipe}): {exc}"
    return ""


def _deploy_chosen(config) -> bool:
    """Whether this run asked for the VM deploy: `-m vm` (the VM tests alone) or
    K1PROV_TEST_VM_DEPLOY=1. Under TCG it takes 9-20 min on 2 cores (the agent's lookup alone
    5-12 min after power on), which the whole suite cannot carry inside CI's budget beside the
    rest; the VM lab's other tests (BMCs, DHCP, teardown) run in every run."""
    return "vm" in (config.option.markexpr or "") or os.environ.get("K1PROV_TEST_VM_DEPLOY") == "1"


def gated_vm_work(vm_lab: VmLab, tmp_path_factory, config, *, name: str, skip: str,
                  why_not: str = "") -> tuple[Path, dict]:
    """What every gated VM test sets up first: skipped (with `skip`) unless chosen, or when an
    image is not built (or `why_not` says why not); else a work directory of its own and the
    environment k1prov runs with against the VM lab's Ironic and Glance."""
    if not _deploy_chosen(config):
        pytest.skip(skip)
    why = _images_why_not() or why_not
    if why:
        pytest.skip(why)
    d = tmp_path_factory.mktemp(name)
    return d, {"K1PROV_STATE_DIR": str(d / "state"),
               "OS_CLIENT_CONFIG_FILE": str(vm_lab.settings.ironic_settings().clouds_yaml_path)}


@pytest.fixture(scope="module")
def deployed(vm_lab, tmp_path_factory, request):
    """Both machines deployed with `k1prov deploy` (through the CLI); timings printed."""
    d, env = gated_vm_work(vm_lab, tmp_path_factory, request.config, name="vmdeploy",
                           skip="the VM deploy runs with -m vm or K1PROV_TEST_VM_DEPLOY=1 (9-20 min under TCG)")
    from k1prov.lab.vm_inventory import render_vm_inventory

    inv = d / "lab-vm.yaml"
    inv.write_text(render_vm_inventory(vm_lab.settings))

    def k1prov(*argv: str):
        result = CliRunner().invoke(app, [*argv, "-i", str(inv)], env=env)
        assert result.exit_code == 0, result.output
        return result

    t0 = time.monotonic()
    # Images first: enroll's provide cleans each node through the agent ramdisk that
    # `images register` puts in its driver_info (the VM lab has no default deploy images).
    k1prov("images", "register")
    k1prov("nodes", "enroll")
    print(f"\nimages register + enroll (provide cleans both): {time.monotonic() - t0:.1f} s")
    t0 = time.time()
    k1prov("deploy")
    took = time.time() - t0
    yield {"dir": d, "inv": inv, "env": env, "k1prov": k1prov, "t0": t0, "took": took}
    CliRunner().invoke(app, ["undeploy", "-i", str(inv)], env=env)


def _timeline(lab: VmLab, m: dict, uuid: str, t0: float) -> dict:
    """Seconds from the deploy's start to each step of one machine's boot, read from the
    logs of Ironic, dnsmasq and the image HTTP server (whole seconds where a log has no more)."""
    import datetime
    import re

    ls = lab.settings.ironic_settings()
    ironic = (ls.log_dir / "ironic.log").read_text(errors="replace").splitlines()
    http = (ls.log_dir / "http.log").read_text(errors="replace").splitlines()
    dhcp = acks(lab.settings.dnsmasq_log, m["mac"])
    year = datetime.date.today().year

    def ironic_at(pattern: str) -> float | None:
        for line in ironic:
            if (uuid in line or m["mac"].replace(":", "%3A") in line) and re.search(pattern, line):
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
                if stamp >= t0:
                    return stamp - t0
        return None

    def first_after(lines, parse) -> float | None:
        for line in lines:
            try:
                stamp = parse(line)
            except ValueError:
                continue
            if stamp >= t0 - 1:
                return max(0.0, stamp - t0)
        return None

    dhcp_at = first_after(dhcp, lambda line: datetime.datetime.strptime(
        f"{year} {' '.join(line.split()[:3])}", "%Y %b %d %H:%M:%S").timestamp())
    ramdisk_at = first_after([x for x in http if "deploy_ramdisk" in x and x.startswith(m["address"] + " ")], lambda line:
                             datetime.datetime.strptime(line.split("[", 1)[1][:20], "%d/%b/%Y %H:%M:%S").timestamp())
    mac = re.escape(m["mac"].replace(":", "%3A"))
    return {"power on": ironic_at(r"power state to power on"), "DHCP (iPXE)": dhcp_at,
            "ramdisk fetched": ramdisk_at, "agent lookup": ironic_at(rf"GET /v1/lookup\?.*{mac}"),
            # The agent done writing: Ironic goes on with the next deploy step.
            "image written": ironic_at(r"remaining steps: \[\{'step': 'prepare_instance_boot'"),
            "active": ironic_at(r'moved to provision state "active"')}


# The deploy fixture runs in this test's setup: under TCG on a loaded 2-core machine a deploy
# of both machines took 15 min here (the agent's lookup alone 4-7 min after power-on), more
# than the suite's 900 s per test.
@pytest.mark.timeout(DEPLOY_TEST_TIMEOUT)
def test_deploy_through_ipmi_and_redfish_boots_the_user_image_and_answers_ssh(vm_lab, deployed):
    from k1prov.inventory import load_inventory

    from labhosts import openssh

    inv = load_inventory(deployed["inv"])
    cluster = inv.cluster
    known_hosts = deployed["dir"] / "state" / cluster / "known_hosts"
    key = vm_lab.settings.root / "ssh" / "id_ed25519"
    print(f"\ndeploy (both machines, through the CLI, up to SSH): {deployed['took']:.0f} s")
    listed = CliRunner().invoke(app, ["nodes", "list", "-i", str(deployed["inv"]), "--json"], env=deployed["env"])
    assert listed.exit_code == 0, listed.output
    uuids = {r["node"]: r["uuid"] for r in json.loads(listed.stdout)["nodes"]}
    for node, m in zip(inv.nodes, _status()["machines"]):
        steps = _timeline(vm_lab, m, uuids[node.name], deployed["t0"])
        print(f"{node.name} ({m['bmc']['type']}): " + ", ".join(
            f"{k} {v:.0f} s" if v is not None else f"{k} ?" for k, v in steps.items()))
        assert steps["agent lookup"] is not None, "the agent never looked its node up"
        # sshd answers before the rest of the boot is done (cloud-init's last stages):
        # --wait blocks until systemd has finished starting.
        out = openssh(key, known_hosts, node.address, "hostname; systemctl is-system-running --wait; "
                      "cat /proc/cmdline; systemctl --failed --no-legend --plain", timeout=600)
        assert out.returncode == 0, (node.name, out.stderr)
        hostname, running, cmdline = out.stdout.splitlines()[:3]
        assert hostname == node.name                     # from the config drive
        assert running == "running", out.stdout           # every unit up, none failed
        assert "root=LABEL=cloudimg-rootfs" in cmdline  # GRUB from the disk, not the ramdisk
        assert vm_lab.libvirt.state(m["name"]) == "running"


def test_undeploy_powers_the_machines_off_and_frees_the_nodes(vm_lab, deployed):
    t0 = time.monotonic()
    deployed["k1prov"]("undeploy")
    print(f"\nundeploy (both machines): {time.monotonic() - t0:.0f} s")
    result = CliRunner().invoke(app, ["nodes", "list", "-i", str(deployed["inv"]), "--json"], env=deployed["env"])
    assert result.exit_code == 0, result.output
    states = {r["node"]: (r["provision_state"], r["power_state"]) for r in json.loads(result.stdout)["nodes"]}
    assert states == {"vm01": ("available", "power off"), "vm02": ("available", "power off")}
    for m in _status()["machines"]:
        assert vm_lab.libvirt.state(m["name"]) == "shut off"


def test_down_leaves_nothing_behind(vm_lab):
    s = vm_lab.settings
    st = _status()
    ms = st["machines"]
    # libvirtd's command line does not name the lab (it runs from its mount namespace's
    # /etc/libvirt): the services are also looked for by their pids.
    pids = [x["pid"] for x in st["services"]]
    # One machine left running: down must stop it too.
    _ipmi(vm_lab, _machine("ipmi"), "power", "on")
    result = _cli("lab", "down", "--kind", "vm")
    assert result.exit_code == 0, result.output
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and (str(s.root) in cmd or int(entry.name) in pids
                           or any(f"guest={m['name']}," in cmd for m in ms)):
            left.append(cmd[:120])
    assert not left, f"processes left: {left}"
    assert not Path(f"/sys/class/net/{s.bridge}").exists(), "bridge left"
    assert not [m["tap"] for m in ms if Path(f"/sys/class/net/{m['tap']}").exists()], "taps left"
    assert not [m["disk"] for m in ms if Path(m["disk"]).exists()], "disk files left"
    assert not (s.root / "libvirt" / "etc" / "qemu").exists(), "domain definitions left"
    busy = procs.wait_ports_free((("tcp", s.vbmcd_port), ("tcp", s.redfish_port), ("tcp", s.ironic_port),
                                  ("tcp", s.glance_port), ("tcp", s.http_port),
                                  *(("udp", m["bmc"]["port"]) for m in ms if m["bmc"]["type"] == "ipmi")),
                                 timeout=5)
    assert not busy, f"ports still in use: {busy}"
