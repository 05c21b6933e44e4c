"""An inventory file that matches a running lab (format: docs/inventory.md).

Nodes are lab01..labNN in three ranged entries: lab01 is a ZooKeeper member and the
Spark master, lab02-lab03 are the other ZooKeeper members, the rest are Spark workers.
The cloud is given by explicit URLs, not the clouds.yaml entry, so that tests using it
never read a user's clouds.yaml.
"""
from __future__ import annotations

import ipaddress

from k1prov.errors import ConfigError
from k1prov.lab.config import LabSettings
from k1prov.lab.machine import machine_mac

# Host number of the first node's address in the lab subnet (10.251.0.11 by default).
FIRST_HOST = 11
# How many nodes are ZooKeeper members (an odd quorum once the lab has three nodes).
ZOOKEEPER_MEMBERS = 3


def lab_address(s: LabSettings, index: int) -> str:
    """The instance address of the index-th (0-based) node of a lab inventory."""
    network = ipaddress.IPv4Interface(s.cidr).network
    return str(network.network_address + FIRST_HOST + index)


def _groups(count: int) -> list[tuple[int, int, list[str]]]:
    """(first, last, roles) per entry, 1-based node numbers."""
    groups = [(1, 1, ["zookeeper", "spark-master"])]
    if count >= 2:
        groups.append((2, min(count, ZOOKEEPER_MEMBERS), ["zookeeper"]))
    if count > ZOOKEEPER_MEMBERS:
        groups.append((ZOOKEEPER_MEMBERS + 1, count, ["spark-worker"]))
    return groups


# Role settings for the lab image (images/lab/README.md): ZooKeeper and Spark are on the
# image already, hosts have no network egress, and memory is kept small. The same block
# stands in inventories/lab.yaml (a unit test keeps them equal).
ROLE_SETTINGS_LINES = [
    "roles:",
    "  zookeeper: {source: preinstalled, server_script: /usr/share/zookeeper/bin/zkServer.sh, heap_mb: 256}",
    "  spark:",
    "    source: preinstalled",
    "    spark_home: /opt/spark",
    "    manager: standalone",
    "    python: /opt/spark-venv/bin/python",
    "    worker_memory: 1g",
    "    defaults: {spark.executor.memory: 512m, spark.driver.memory: 512m}",
]


def _ssh_lines(s: LabSettings) -> list[str]:
    """The operator key `lab up` makes; its public half is written in when it exists
    (an inventory written before `lab up` has none, and deploy then refuses clearly)."""
    key = s.root / "ssh" / "id_ed25519"
    lines = ["ssh:", "  user: root", f'  private_key: "{key}"']
    pub = key.with_suffix(".pub")
    if pub.is_file():
        lines.append(f'  public_keys: ["{pub.read_text().strip()}"]')
    return lines


def render_inventory(s: LabSettings, *, nodes: int | None = None, cluster: str = "lab") -> str:
    count = s.nodes if nodes is None else nodes
    if not 1 <= count <= s.nodes:
        raise ConfigError(f"the lab has {s.nodes} machines; cannot write an inventory of {count}")
    width = max(2, len(str(count)))
    lines = [
        f"# Inventory of the k1prov lab in {s.root} ({count} of its {s.nodes} machines).",
        "# Written by `k1prov lab inventory`; the BMCs are the lab's IPMI simulators.",
        f"cluster: {cluster}",
        "cloud:",
        f"  ironic_url: {s.ironic_url}",
        f"  glance_url: {s.glance_url}",
        f'  deploy_logs: "{s.root / "deploy-logs"}"',
        "network:",
        f"  prefix_length: {ipaddress.IPv4Interface(s.cidr).network.prefixlen}",
        *_ssh_lines(s),
        "images:",
        "  deploy_kernel: {name: k1prov-lab-deploy-kernel}",
        "  deploy_ramdisk: {name: k1prov-lab-deploy-ramdisk}",
        "  user: {name: k1prov-lab}",
        *ROLE_SETTINGS_LINES,
        "defaults:",
        "  driver: ipmi",
        "  interfaces: {power: ipmitool, management: ipmitool, deploy: direct, boot: pxe}",
        "  bmc:",
        "    address: 127.0.0.1",
        f"    username: {s.bmc_username}",
        f'    password: {{file: "{s.bmc_password_file}"}}',
        "nodes:",
    ]
    for first, last, roles in _groups(count):
        offset = first - 1
        name = (f"lab{first:0{width}d}" if first == last
                else f"lab[{first:0{width}d}-{last:0{width}d}]")
        lines += [
            f"  - name: {name}",
            f"    roles: [{', '.join(roles)}]",
            f"    bmc: {{port: {{start: {s.bmc_base_port + offset}}}}}",
            f'    macs: [{{start: "{machine_mac(s.bmc_base_port + offset)}"}}]',
            f'    address: {{start: "{lab_address(s, offset)}"}}',
        ]
    return "\n".join(lines) + "\n"
