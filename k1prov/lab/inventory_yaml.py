"""An inventory file that matches a running lab (format: docs/inventory.md).

Nodes are lab01..labNN in three ranged entries. With Mesos (the lab has a Mesos build,
k1prov.lab.mesos): lab01-lab03 are ZooKeeper members and Mesos masters (lab01 also the
Spark client jobs are submitted from), the rest Mesos agents with Spark on them, and Spark
runs on mesos://zk://... Without Mesos: lab01 is a ZooKeeper member and the standalone
Spark master, lab02-lab03 the other ZooKeeper members, the rest Spark workers.
Without auth the cloud is given by explicit URLs, not the clouds.yaml entry, so that tests
using it never read a user's clouds.yaml; a lab with auth is named by its entry, which
holds the password. inventories/lab.yaml (Mesos) and
inventories/lab-standalone.yaml (without) are these for the default lab (a unit test
keeps them equal).
"""
from __future__ import annotations

import ipaddress

from k1prov.errors import ConfigError
from k1prov.lab.config import LabSettings
from k1prov.lab.machine import machine_mac
from k1prov.lab.mesos import published_sums, published_url

# Host number of the first node's address in the lab subnet (10.251.0.11 by default).
FIRST_HOST = 11
# How many nodes are ZooKeeper members (an odd quorum once the lab has three nodes).
ZOOKEEPER_MEMBERS = 3


def lab_address(s: LabSettings, index: int) -> str:
    """The instance address of the index-th (0-based) node of a lab inventory."""
    network = ipaddress.IPv4Interface(s.cidr).network
    return str(network.network_address + FIRST_HOST + index)


def _groups(count: int, mesos: bool) -> list[tuple[int, int, list[str]]]:
    """(first, last, roles) per entry, 1-based node numbers."""
    if mesos:
        first, members, workers = (["zookeeper", "mesos-master", "spark-client"],
                                   ["zookeeper", "mesos-master"], ["mesos-agent", "spark-worker"])
    else:
        first, members, workers = ["zookeeper", "spark-master"], ["zookeeper"], ["spark-worker"]
    groups = [(1, 1, first)]
    if count >= 2:
        groups.append((2, min(count, ZOOKEEPER_MEMBERS), members))
    if count > ZOOKEEPER_MEMBERS:
        groups.append((ZOOKEEPER_MEMBERS + 1, count, workers))
    return groups


# Role settings for the lab image (images/lab/README.md): ZooKeeper and Spark are on the
# image already, hosts have no network egress, and memory is kept small. The same blocks
# stand in inventories/lab.yaml and lab-standalone.yaml (a unit test keeps them equal).
ZOOKEEPER_LINES = [
    "  zookeeper: {source: preinstalled, server_script: /usr/share/zookeeper/bin/zkServer.sh, heap_mb: 256}",
]
STANDALONE_SPARK_LINES = [
    "  spark:",
    "    source: preinstalled",
    "    spark_home: /opt/spark",
    "    manager: standalone",
    "    python: /opt/spark-venv/bin/python",
    "    worker_memory: 1g",
    "    defaults: {spark.executor.memory: 512m, spark.driver.memory: 512m}",
]


def mesos_role_lines(url: str, sha512_file: str) -> list[str]:
    """roles.mesos and roles.spark for Mesos in the lab: the build `lab up` publishes
    (k1prov.lab.mesos), checksum from the SHA512SUMS beside it; the posix launcher and
    isolators (lab hosts have no cgroup hierarchy of their own); agents offer 2 cpus and
    1.5 GB, an executor takes 512 MB + 384 MB overhead (the -O0 Mesos daemons take about
    240 MB each already). The roles `bench drf` runs in are weighted 1 and 2, and the masters
    allocate every 100ms, with which its share ratio comes out at the weights' (k1prov.bench.drf)."""
    return [
        "  mesos:",
        "    source: tarball",
        f"    url: {url}",
        f"    sha512_file: {sha512_file}",
        "    isolation: posix/cpu,posix/mem",
        "    agent_flags: {launcher: posix}",
        '    resources: "cpus:2;mem:1536;disk:2048"',
        "    weights: {drf1: 1, drf2: 2}",
        "    master_flags: {allocation_interval: 100ms}",
        "  spark:",
        "    source: preinstalled",
        "    spark_home: /opt/spark",
        "    manager: mesos",
        "    mode: coarse",
        "    python: /opt/spark-venv/bin/python",
        "    defaults: {spark.executor.memory: 512m, spark.driver.memory: 512m, spark.cores.max: 2,",
        "               spark.mesos.executor.memoryOverhead: 384}",
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


def render_inventory(s: LabSettings, *, nodes: int | None = None, cluster: str = "lab",
                     mesos: bool = False) -> str:
    """The inventory of `nodes` of the lab's machines (all by default); mesos: with Mesos
    masters and agents and Spark on Mesos (the lab must publish a build: `lab up`)."""
    count = s.nodes if nodes is None else nodes
    if not 1 <= count <= s.nodes:
        raise ConfigError(f"the lab has {s.nodes} machines; cannot write an inventory of {count}")
    width = max(2, len(str(count)))
    lines = [
        f"# Inventory of the k1prov lab in {s.root} ({count} of its {s.nodes} machines).",
        "# Written by `k1prov lab inventory`; the BMCs are the lab's IPMI simulators.",
        f"cluster: {cluster}",
        "cloud:",
        # With auth, the clouds.yaml entry `lab up` wrote (it holds the password);
        # without, the URLs themselves.
        *([f"  ironic_url: {s.ironic_url}", f"  glance_url: {s.glance_url}"] if s.auth == "none"
          else [f"  cloud: {s.cloud_name}"]),
        f'  deploy_logs: "{s.root / "deploy-logs"}"',
        "network:",
        f"  prefix_length: {ipaddress.IPv4Interface(s.cidr).network.prefixlen}",
        *_ssh_lines(s),
        "images:",
        "  deploy_kernel: {name: k1prov-lab-deploy-kernel}",
        "  deploy_ramdisk: {name: k1prov-lab-deploy-ramdisk}",
        "  user: {name: k1prov-lab}",
        "roles:",
        *ZOOKEEPER_LINES,
        *(mesos_role_lines(published_url(s.http_url), f'"{published_sums(s.http_dir)}"') if mesos
          else STANDALONE_SPARK_LINES),
        "defaults:",
        "  driver: ipmi",
        "  interfaces: {power: ipmitool, management: ipmitool, deploy: direct, boot: pxe}",
        "  bmc:",
        "    address: 127.0.0.1",
        f"    username: {s.bmc_username}",
        f'    password: {{file: "{s.bmc_password_file}"}}',
        "nodes:",
    ]
    for first, last, roles in _groups(count, mesos):
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
