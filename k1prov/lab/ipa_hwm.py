"""ironic-python-agent hardware manager for a lab machine (runs in the lab venv).

Installed into the lab's virtualenv as the module `k1prov_lab_ipa` with an entry point
in `ironic_python_agent.hardware_managers` (k1prov.lab.lab writes it there); it
imports ironic_python_agent, never k1prov. The lab machine (k1prov/lab/machine.py)
starts the agent with the environment variables

    K1PROV_MACHINE_DISK=/dev/loopN   the machine's one disk
    K1PROV_MACHINE_NIC=eth0          the machine's one NIC (the veth with the port's MAC)
    K1PROV_MACHINE_BMC=169.254.x.y   its BMC's LAN address (k1prov.lab.machine.bmc_lan_address)

The generic manager sees a loop device and a veth as no hardware at all: it skips
block devices of TYPE loop, and it keeps only physical NICs (and waits forever for
"the network"). This manager ranks above it (SERVICE_PROVIDER) and answers for the
disk and the NIC, and for the BMC's address (a real agent reads it with ipmitool from
the machine's BMC; the lab's machines have no /dev/ipmi0): Ironic matches the inspection
report of a node enrolled without ports by it. Everything else (CPU, memory, ...) is the
generic manager's.
"""
import os

from ironic_python_agent import hardware
from ironic_python_agent import netutils

DISK_ENV = "K1PROV_MACHINE_DISK"
NIC_ENV = "K1PROV_MACHINE_NIC"
BMC_ENV = "K1PROV_MACHINE_BMC"


def _sysfs_int(path, default=0):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


class LabMachineHardwareManager(hardware.GenericHardwareManager):
    HARDWARE_MANAGER_NAME = "k1prov_lab_machine"
    HARDWARE_MANAGER_VERSION = "1.0"

    def evaluate_hardware_support(self):
        if os.environ.get(DISK_ENV):
            return hardware.HardwareSupport.SERVICE_PROVIDER
        return hardware.HardwareSupport.NONE

    def list_block_devices(self, include_partitions=False, all_serial_and_wwn=False):
        disk = os.environ[DISK_ENV]
        name = os.path.basename(disk)
        sysfs = f"/sys/block/{name}"
        devices = [hardware.BlockDevice(
            name=disk, model="k1prov lab disk", size=_sysfs_int(f"{sysfs}/size") * 512,
            rotational=False, serial=f"k1prov-{name}", vendor="k1prov",
            logical_sectors=_sysfs_int(f"{sysfs}/queue/logical_block_size", 512),
            physical_sectors=_sysfs_int(f"{sysfs}/queue/physical_block_size", 512))]
        if include_partitions:
            try:
                parts = sorted(p for p in os.listdir(sysfs) if p.startswith(name + "p"))
            except OSError:
                parts = []
            for part in parts:
                devices.append(hardware.BlockDevice(
                    name=f"/dev/{part}", model="", size=_sysfs_int(f"{sysfs}/{part}/size") * 512,
                    rotational=False, vendor="k1prov"))
        return devices

    def list_network_interfaces(self):
        nic = os.environ.get(NIC_ENV, "eth0")
        with open(f"/sys/class/net/{nic}/address") as f:
            mac = f.read().strip()
        return [hardware.NetworkInterface(
            name=nic, mac_addr=mac, ipv4_address=netutils.get_ipv4_addr(nic),
            has_carrier=True, vendor="0x1af4", product="0x0001", driver="veth")]

    def get_bmc_address(self):
        # What ipmitool's `lan print` would read from the BMC: its LAN address.
        return os.environ.get(BMC_ENV) or None

    def get_bmc_v6address(self):
        return None

    def get_bmc_mac(self):
        return None
