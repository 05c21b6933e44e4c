"""An inventory file that matches a running VM lab (`k1prov lab inventory --kind vm`).

Nodes vm01..vmNN, one entry each: the VM lab's machine i (k1prov.lab.vm.machines) with its
BMC (IPMI through virtualbmc for even i, Redfish through sushy-tools for odd i), its MAC,
and as instance address the one the lab's dnsmasq leases its MAC. Images by name from
images/catalog.yaml: the agent ramdisk scripts/vm-lab/build-ipa-ramdisk.sh builds and the
user image of scripts/vm-lab/build-user-image.sh. Every machine is a ZooKeeper member
(`cluster up` on the VM lab runs the ensemble under the machines' systemd): ZooKeeper is
Debian's package already on the user image, since the VMs have no route out. Mesos and
Spark stay in the netns lab (too heavy for TCG machines of 1.5 GiB). inventories/lab-vm.yaml
is this for the default VM lab (a unit test keeps them equal).
"""
from __future__ import annotations

import ipaddress

from k1prov.errors import ConfigError
from k1prov.lab.vm import VM_CLOUD_NAME, VmLabSettings, machines

# Catalog names (images/catalog.yaml) of the VM lab's images.
VM_DEPLOY_KERNEL = "k1prov-vm-deploy-kernel"
VM_DEPLOY_RAMDISK = "k1prov-vm-deploy-ramdisk"
VM_USER_IMAGE = "k1prov-vm-user"


def vm_ssh_key(s: VmLabSettings):
    """The operator's key pair `lab up --kind vm` makes (private half; .pub beside it)."""
    return s.root / "ssh" / "id_ed25519"


def render_vm_inventory(s: VmLabSettings, *, nodes: int | None = None, cluster: str = "lab-vm",
                        home_relative: bool = False) -> str:
    """The inventory of the first `nodes` machines of the VM lab (all by default).
    home_relative: paths under the home directory written with `~` (the checked-in file)."""
    count = s.nodes if nodes is None else nodes
    if not 1 <= count <= s.nodes:
        raise ConfigError(f"the VM lab has {s.nodes} machines; cannot write an inventory of {count}")
    ironic = s.ironic_settings()

    def path(p) -> str:
        text = str(p)
        if home_relative:
            from pathlib import Path

            home = str(Path("~").expanduser())
            if text.startswith(home + "/"):
                text = "~" + text[len(home):]
        return f'"{text}"'

    key = vm_ssh_key(s)
    lines = [
        f"# Inventory of the k1prov VM lab in {path(s.root)[1:-1]} ({count} of its {s.nodes} machines).",
        "# Written by `k1prov lab inventory --kind vm`. Even machines have an IPMI BMC (virtualbmc),",
        "# odd ones a Redfish BMC (sushy-tools); Ironic boots them with iPXE and deploys them with",
        "# the real agent ramdisk (`direct`), then they boot the user image from their disk.",
        f"cluster: {cluster}",
        "cloud:",
        f"  cloud: {VM_CLOUD_NAME}",
        f"  deploy_logs: {path(ironic.root / 'deploy-logs')}",
        "network:",
        f"  prefix_length: {ipaddress.IPv4Interface(s.cidr).network.prefixlen}",
        "ssh:",
        "  user: root",
        f"  private_key: {path(key)}",
        f"  public_key_files: [{path(key.with_suffix('.pub'))}]",
        "images:",
        f"  deploy_kernel: {{name: {VM_DEPLOY_KERNEL}}}",
        f"  deploy_ramdisk: {{name: {VM_DEPLOY_RAMDISK}}}",
        f"  user: {{name: {VM_USER_IMAGE}}}",
        "defaults:",
        "  interfaces: {deploy: direct, boot: ipxe}",
        "  bmc:",
        f"    username: {s.bmc_username}",
        f"    password: {{file: {path(s.bmc_password_file)}}}",
        "nodes:",
    ]
    width = max(2, len(str(count)))
    for i, m in enumerate(machines(s)[:count]):
        lines += [f"  - name: vm{i + 1:0{width}d}", "    roles: [zookeeper]"]
        if m.bmc["type"] == "ipmi":
            lines += ["    driver: ipmi",
                      "    interfaces: {power: ipmitool, management: ipmitool}",
                      f"    bmc: {{address: {m.bmc['address']}, port: {m.bmc['port']}}}"]
        else:
            lines += ["    driver: redfish",
                      f"    bmc: {{url: \"{m.bmc['url']}\", system_id: {m.bmc['system']}, verify: false}}"]
        lines += [f'    macs: ["{m.mac}"]', f'    address: "{m.address}"']
    lines += [
        "# ZooKeeper from the user image (scripts/vm-lab/build-user-image.sh): nothing downloaded.",
        "roles:",
        "  zookeeper: {source: preinstalled, server_script: /usr/share/zookeeper/bin/zkServer.sh, heap_mb: 256}",
    ]
    return "\n".join(lines) + "\n"
