"""The lab machine's pure parts: PXE config checks, DHCP leases, reading a disk's partition
table and config-2 partition, and the hardware's decisions (no root, no network)."""
from __future__ import annotations

import base64
import gzip
import ipaddress
import struct
from pathlib import Path

import pytest

from k1prov.configdrive import StaticNetwork, build_config_drive, build_config_drive_iso
from k1prov.errors import LabError
from k1prov.hostkeys import ensure_host_key
from k1prov.imagecatalog import lab_deploy_image_bytes
from k1prov.lab.configdrive_apply import host_config_from_config_drive
from k1prov.lab.disk import mbr_partitions, read_config_drive, root_partition
from k1prov.lab.machine import machine_mac
from k1prov.lab.pxe import Dhcp, boot_purpose, deploy_ramdisk_cmdline_ok, pxe_config_path, read_pxe_config
from k1prov.lab.reconciler import BOOT, BUTTON, OFF, decide

MAC = machine_mac(16262)
UUID = "261edc14-91cb-4423-a8cb-5e886bddc31e"
# What Ironic 39 writes for a `pxe` boot + `direct` deploy node (its pxe_config.template).
PXE_CONFIG = f"""default deploy

label deploy
kernel {UUID}/deploy_kernel
append initrd={UUID}/deploy_ramdisk selinux=0 troubleshoot=0 text nofb vga=normal ipa-api-url=http://10.251.0.1:16385 coreos.configdrive=0
ipappend 2


label boot_partition
kernel {UUID}/kernel
append initrd={UUID}/ramdisk root={{{{ ROOT }}}} ro text nofb vga=normal
"""


def tftp(tmp_path: Path, *, kernel: bytes | None = None, ramdisk: bytes | None = None,
         config: str = PXE_CONFIG) -> Path:
    root = tmp_path / "tftpboot"
    (root / UUID).mkdir(parents=True)
    (root / UUID / "deploy_kernel").write_bytes(kernel or lab_deploy_image_bytes("lab-deploy-kernel"))
    (root / UUID / "deploy_ramdisk").write_bytes(ramdisk or lab_deploy_image_bytes("lab-deploy-ramdisk"))
    path = pxe_config_path(root, MAC)
    path.parent.mkdir()
    path.write_text(config)
    return root


def test_mac_is_fixed_per_bmc_port_and_counts_up_with_it():
    assert machine_mac(6230) == "02:6b:70:00:18:56"
    assert machine_mac(6231) == "02:6b:70:00:18:57"
    assert pxe_config_path(Path("/t"), "02:6B:70:00:18:56").name == "01-02-6b-70-00-18-56"


def test_pxe_config_gives_the_agent_its_kernel_command_line(tmp_path):
    boot = read_pxe_config(tftp(tmp_path), MAC)
    assert boot.kernel.name == "deploy_kernel" and boot.initrd.name == "deploy_ramdisk"
    assert "ipa-api-url=http://10.251.0.1:16385" in boot.cmdline
    assert boot.cmdline.endswith("BOOTIF=01-" + MAC.replace(":", "-"))


def test_an_inspection_boot_has_the_callback_instead_of_the_api_url(tmp_path):
    """What Ironic 39 writes when it prepares an inspection (agent inspect interface, no
    fast track): the same template, ipa-inspection-callback-url and no ipa-api-url."""
    config = PXE_CONFIG.replace("ipa-api-url=http://10.251.0.1:16385 coreos.configdrive=0",
                                "ipa-inspection-callback-url=http://10.251.0.1:16385/v1/continue_inspection")
    boot = read_pxe_config(tftp(tmp_path, config=config), MAC)
    assert "ipa-api-url=" not in boot.cmdline
    assert deploy_ramdisk_cmdline_ok(boot.cmdline) and boot_purpose(boot.cmdline) == "inspection"
    deploy = read_pxe_config(tftp(tmp_path / "d"), MAC)
    assert deploy_ramdisk_cmdline_ok(deploy.cmdline) and boot_purpose(deploy.cmdline) == "agent"
    assert not deploy_ramdisk_cmdline_ok("initrd=x selinux=0 text")


def test_no_pxe_config_for_the_mac_does_not_boot(tmp_path):
    root = tftp(tmp_path)
    with pytest.raises(LabError, match="no config for"):
        read_pxe_config(root, machine_mac(16263))


def test_a_deploy_ramdisk_that_is_no_initramfs_does_not_boot(tmp_path):
    # e.g. driver_info.deploy_ramdisk set to the user image
    with pytest.raises(LabError, match="not an initramfs"):
        read_pxe_config(tftp(tmp_path, ramdisk=b"\0" * 4096), MAC)
    with pytest.raises(LabError, match="not a Linux kernel"):
        read_pxe_config(tftp(tmp_path / "k", kernel=b"\0" * 4096), MAC)


def test_a_config_naming_files_outside_the_tftp_root_does_not_boot(tmp_path):
    config = PXE_CONFIG.replace(f"kernel {UUID}/deploy_kernel", "kernel ../../etc/passwd")
    with pytest.raises(LabError, match="TFTP has no file"):
        read_pxe_config(tftp(tmp_path, config=config), MAC)


def test_dhcp_leases_from_the_top_quarter_and_keeps_a_lease_per_mac(tmp_path):
    net = ipaddress.IPv4Network("10.251.0.0/24")
    dhcp = Dhcp(tmp_path / "leases.json", net, "10.251.0.1")
    a = dhcp.lease("02:00:00:00:00:01")
    b = dhcp.lease("02:00:00:00:00:02")
    assert a == "10.251.0.191" and b == "10.251.0.192"
    assert dhcp.lease("02:00:00:00:00:01") == a
    dhcp.release("02:00:00:00:00:01")
    assert dhcp.lease("02:00:00:00:00:03") == a


def _disk_with_config_drive(tmp_path: Path) -> tuple[Path, dict]:
    """A 16 MiB disk: MBR, partition 1 at 1 MiB (8 MiB), partition 2 = a config-2 ISO."""
    key = ensure_host_key(tmp_path / "keys", "n1")
    drive = build_config_drive(hostname="n1", uuid="u", public_keys=["ssh-ed25519 AAAAC3Nz op@x"],
                               host_key=key, network=StaticNetwork("10.251.0.31", 24, None, (), None, MAC))
    # Ironic ships the ISO gzip'd and base64-encoded; the agent writes the plain ISO.
    raw = gzip.decompress(base64.b64decode(build_config_drive_iso(drive)))
    disk = tmp_path / "disk.img"
    size = 16 * 2**20
    p2_start = 10 * 2**20
    mbr = bytearray(512)
    for i, (boot, ptype, lba, count) in enumerate([(0x80, 0x83, 2048, 8 * 2048),
                                                   (0, 0x0C, p2_start // 512, (size - p2_start) // 512)]):
        entry = bytearray(16)
        entry[0], entry[4] = boot, ptype
        struct.pack_into("<II", entry, 8, lba, count)
        mbr[446 + 16 * i: 462 + 16 * i] = entry
    mbr[510:512] = b"\x55\xaa"
    with open(disk, "wb") as f:
        f.truncate(size)
        f.write(mbr)
        f.seek(p2_start)
        f.write(raw)
    return disk, drive


def test_disk_partitions_and_config_drive_are_read_like_glean_does(tmp_path):
    disk, _ = _disk_with_config_drive(tmp_path)
    parts = mbr_partitions(disk)
    assert [(p.number, p.start, p.bootable) for p in parts] == [(1, 2**20, True), (2, 10 * 2**20, False)]
    assert root_partition(disk).size == 8 * 2**20
    part, iso = read_config_drive(disk)
    assert part.number == 2
    config = host_config_from_config_drive(iso)
    assert (config.hostname, config.address) == ("n1", "10.251.0.31")


def test_empty_disk_has_no_partitions_and_no_config_drive(tmp_path):
    disk = tmp_path / "empty.img"
    disk.write_bytes(b"\0" * 2**20)
    assert mbr_partitions(disk) == [] and root_partition(disk) is None
    assert read_config_drive(disk) is None


@pytest.mark.parametrize("bmc, machine, running, button, resources, expected", [
    ({"power": "off", "boots": 3}, {"boots": 3}, None, None, False, None),      # off and idle
    ({"power": "off", "boots": 3}, {"boots": 3, "running": "host"}, "host", None, True, OFF),
    ({"power": "on", "boots": 4}, {"boots": 3}, None, None, False, BOOT),        # power on
    ({"power": "on", "boots": 5}, {"boots": 4, "running": "agent"}, "agent", None, True, BOOT),  # reset
    ({"power": "on", "boots": 4}, {"boots": 4, "running": "host"}, "host", None, True, None),
    # A boot device change alone is no reboot (Ironic sets "disk" while the agent runs).
    ({"power": "on", "boots": 4, "boot_device": "hd"}, {"boots": 4, "running": "agent"}, "agent",
     None, True, None),
    ({"power": "on", "boots": 4}, {"boots": 4, "running": "agent"}, "agent", "poweroff", True, BUTTON),
    ({"power": "on", "boots": 4}, {"boots": 4, "running": "agent", "button_pressed": "poweroff"},
     "agent", "poweroff", True, None),                                           # pressed once
])
def test_the_hardware_follows_the_bmc(bmc, machine, running, button, resources, expected):
    assert decide(bmc, machine, running=running, button=button, has_resources=resources) == expected


def test_a_restarted_hardware_process_boots_again_only_machines_on_which_nothing_runs(tmp_path):
    """Machine.adopt: what ran before the hardware process restarted keeps running when it
    still runs (its boot count is kept, so the BMC's state asks for nothing); a machine
    whose host or agent is gone (this machine rebooted, lab down) boots again."""
    from k1prov.lab.machine import Machine
    from k1prov.lab.partitions import allowed_partitions

    class Booter:
        def __init__(self, state):
            self.state = state

        def status(self, name):
            return type("Info", (), {"state": self.state})()

    def machine(state: str) -> Machine:
        return Machine(16262, root=tmp_path / state, lab_id="x", venv=tmp_path, tftp_root=tmp_path,
                       bridge="b", dhcp=None, booter=Booter(state), disk_gb=1)

    bmc = {"power": "on", "boots": 3}
    alive, gone = machine("running"), machine("stopped")
    for m in (alive, gone):
        m._save(boots=3, running="host", address="10.0.0.5")
    assert alive.adopt() == "host" and alive.state()["boots"] == 3
    assert decide(bmc, alive.state(), running=alive.running(), button=None, has_resources=True) is None
    assert gone.adopt() is None and gone.state()["boots"] is None
    assert decide(bmc, gone.state(), running=None, button=None, has_resources=False) == BOOT
    # An adopted agent's partition fence starts from what its devices cgroup allows now.
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "devices.list").write_text("c 1:3 rwm\nb 7:12 rwm\nb 259:4 rwm\nb 259:7 rwm\n")
    assert allowed_partitions(devices) == {(259, 4), (259, 7)}
    assert allowed_partitions(tmp_path / "none") == set()
