"""Lab settings and the configuration files of the lab's services.

Everything here is pure (settings in, text out) except `write_configs`, which writes
the rendered files into the lab's state directory. The settings that Ironic and Glance
need were found by hand and are recorded in /work/shared/LAB-NOTES.md.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from k1prov.atomic_file import write_if_changed
from k1prov.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
REQUIREMENTS_FILE = PACKAGE_DIR / "requirements-lab.txt"
GLANCE_PASTE_FILE = PACKAGE_DIR / "glance-api-paste.ini"
BMCSIM_SCRIPT = PACKAGE_DIR / "bmcsim.py"

# Ironic API microversion written into the clouds.yaml entry. "1.x" lets the SDK and the
# CLI negotiate the newest version both sides know.
BAREMETAL_API_VERSION = "1.x"

# The lab's Glance has no Keystone: every request carries the empty-role context of the
# "unauthenticated-context" filter, and Glance's default rules ("role:admin" or a project
# reader) refuse it with 403. Making that context an admin opens the API (the lab listens
# on 127.0.0.1 only); publicize_image lets images be public.
GLANCE_POLICY = '"context_is_admin": ""\n"publicize_image": ""\n'

# Ironic's default policy: the lab machines never read Ironic's API (the agent gets the
# config drive with its deploy step, as on real hardware), so no secret is opened up.
IRONIC_POLICY = "{}\n"

# How the lab's Ironic and Glance check who calls them (`k1prov lab up --auth`):
# - "none": no credentials anywhere (Ironic on the bridge answers anyone);
# - "http_basic": a standalone Ironic as Bifrost and Metal3 run it, with its own htpasswd
#   file; Glance has no http_basic and stays without auth on loopback (README, "The lab");
# - "keystone": Keystone on loopback issues tokens for both; Ironic and Glance check them
#   with keystonemiddleware.
AUTH_MODES = ("none", "http_basic", "keystone")
# The operator's user in Ironic's htpasswd file (http_basic) and Keystone's admin (keystone).
HTTP_BASIC_USER = "k1prov"
KEYSTONE_ADMIN = "admin"
KEYSTONE_REGION = "RegionOne"
# Keystone's project of service users, as Ironic's and Glance's service_role rules expect.
SERVICE_PROJECT = "service"


HARDWARE_KINDS = ("simulated", "vm")
# The deploy ramdisk's kernel line on the VM lab's machines: its serial console into the
# machine's log file, and the unpacked ramdisk (about 700 MiB) on ramfs, which unlike the
# default tmpfs is not capped at half of the 1.5 GiB machine's memory (vm-proto NOTES,
# "Memory per VM").
VM_KERNEL_APPEND = "nofb vga=normal console=ttyS0,115200n8 rootfstype=ramfs"
# isolinux.bin of Debian's isolinux package: Ironic builds the BIOS deploy ISO of the
# redfish-virtual-media boot with it (scripts/apt-packages.txt).
VM_ISOLINUX_BIN = "/usr/lib/ISOLINUX/isolinux.bin"


# `lab up --conductors`: the lab machine has 2 cores; Ironic's guidance is ~300 nodes each.
MAX_CONDUCTORS = 8
# With several conductors, each one's JSON-RPC server listens on Ironic's default port on a
# loopback address of its own (LabSettings.conductor_host), which is also its [DEFAULT] host.
# Not one address with a port each: Ironic 39 then registers a conductor as "host:port" but
# reserves nodes as "host", so a dead conductor's reservations match no offline conductor
# and its nodes stay locked in `deploying` for ever (seen in this lab). Loopback only, no
# auth: only the API and the conductors on this machine call it.
JSON_RPC_PORT = 8089
# [conductor] heartbeat_interval (s) with several conductors (Ironic's default is 10): the
# heartbeat_timeout of the tests that kill a conductor is a few of these.
CONDUCTOR_HEARTBEAT_INTERVAL = 3
# How often a conductor looks for nodes of a dead conductor (check_provision_state_interval,
# Ironic's default 60 s) and re-reads the conductor list into its hash ring
# (hash_ring_reset_interval, 15 s): a conductor's death is seen in seconds, not minutes.
CONDUCTOR_TAKEOVER_CHECK = 5


@dataclass(frozen=True)
class LabSettings:
    # State directory: configs, sqlite databases, logs, pidfiles, images, BMC state.
    root: Path
    # The lab's own virtualenv. Kept apart from `root` so that tests with a temporary
    # root reuse the one installed venv.
    venv: Path
    ironic_port: int = 6385
    glance_port: int = 9292
    # Static HTTP server of root/http: Ironic's `direct` deploy stages images there.
    http_port: int = 8088
    # BMC i (0-based) listens on UDP bmc_base_port + i.
    bmc_base_port: int = 6230
    nodes: int = 5
    # What a booted host runs as PID 1 (k1prov.lab.hosts.HOST_INITS, `lab up --host-init`):
    # "plain" (k1p-init: sshd, role services under pid files) or "systemd" (as a systemd
    # container: role services as systemd units, back after a power cycle; no more memory
    # per host, benchmarks/lab_host_init.py). systemd is the default: the role scripts' branch
    # every real machine takes is the one the lab and CI run.
    host_init: str = "systemd"
    bmc_username: str = "admin"
    # Where the clouds.yaml entry goes; None means ~/.config/openstack/clouds.yaml.
    clouds_yaml: Path | None = None
    cloud_name: str = "k1prov-lab"
    # The lab's network: one bridge on this machine, its address (this machine's, where
    # Ironic and the image HTTP server listen so that the machines' agents reach them)
    # with the subnet's prefix. Machines that network-boot lease addresses from the top
    # quarter of the subnet (k1prov.lab.pxe.Dhcp); instances get theirs from their
    # config drive.
    bridge: str = "k1plab0"
    cidr: str = "10.251.0.1/24"
    # Size of each machine's disk (a sparse file: only what the agent writes takes room).
    disk_gb: int = 4
    # A lab fault: BMCs that drop answers and send the others late, "PORT:DROP:DELAY"
    # ("6231:0.3:1": 30 % dropped, the rest 1 s late; k1prov/lab/bmcsim.py --flaky).
    flaky_bmcs: tuple[str, ...] = ()
    # One of AUTH_MODES.
    auth: str = "keystone"
    # Keystone (auth "keystone" only), on 127.0.0.1.
    keystone_port: int = 5000
    # Lifetime of a Keystone token (s); tests shorten it to see k1prov re-authenticate
    # (keystoneauth asks for a new token once the one it holds has less than 2 min left).
    token_expiration: int = 3600
    # Another: BMCs that are gone (nothing listens on their ports; bmcsim.py --dead). Their
    # machines keep the power state they had.
    dead_bmcs: tuple[int, ...] = ()
    # Ironic's shape (`k1prov lab up --conductors N`). 0: one all-in-one `ironic` process on
    # SQLite (the default). N >= 1: MariaDB (k1prov.lab.mariadb), `ironic-api` and N
    # `ironic-conductor` processes joined by JSON-RPC, as sites that outgrow one conductor
    # run it. Conductor i (1-based) is conductor_host(i), the `conductor` field of its nodes.
    conductors: int = 0
    # The conductor group of each conductor, in order (one per conductor); empty: every
    # conductor in the default group "" (nodes without conductor_group), spread over them
    # by Ironic's hash ring.
    conductor_groups: tuple[str, ...] = ()
    mariadb_port: int = 3306
    # [conductor] heartbeat_timeout (s): after it, a silent conductor's nodes go to the
    # others (hash ring) and its DEPLOYING nodes fail. Ironic's default is 60; the tests
    # that kill a conductor shorten it. Conductors beat every CONDUCTOR_HEARTBEAT_INTERVAL.
    conductor_heartbeat_timeout: int = 60
    # Ironic's automated cleaning ([conductor] automated_clean): on, as in a real Ironic,
    # erasing disk metadata only (a full erase of every disk at each undeploy is a site's
    # choice, not the lab's). On in the VM lab too (real agent ramdisk, real disks); off
    # only for a lab whose nodes cannot boot a cleaning ramdisk.
    automated_clean: bool = True
    # The conductor's default deploy kernel/ramdisk (default_deploy_images, Bifrost's way):
    # off for a lab like an Ironic without them, where a node is cleaned only with the
    # deploy images k1prov gave it before `provide` (issue 21).
    conductor_deploy_images: bool = True
    # What the machines are (HARDWARE_KINDS): "simulated", the lab's BMC simulator and
    # network-namespace machines (k1prov.lab.machine); "vm", the VM lab's virtual machines
    # (k1prov.lab.vm), which run no simulator here and network-boot the real agent ramdisk.
    hardware: str = "simulated"

    @classmethod
    def default(cls) -> "LabSettings":
        """Settings from K1PROV_LAB_DIR / K1PROV_LAB_VENV, else the per-user locations."""
        root = os.environ.get("K1PROV_LAB_DIR") or "~/.local/share/k1prov/lab"
        venv = os.environ.get("K1PROV_LAB_VENV") or "~/.cache/k1prov/lab-venv"
        return cls(root=Path(root).expanduser(), venv=Path(venv).expanduser())

    def __post_init__(self) -> None:
        for name in ("ironic_port", "glance_port", "http_port", "bmc_base_port", "keystone_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ConfigError(f"lab setting {name}: {port} is not a port number")
        if self.nodes < 1:
            raise ConfigError(f"lab setting nodes: {self.nodes} (need at least 1)")
        if self.bmc_base_port + self.nodes - 1 > 65535:
            raise ConfigError(f"lab setting nodes: {self.nodes} BMCs from port "
                              f"{self.bmc_base_port} run past port 65535")
        tcp = [self.ironic_port, self.glance_port, self.http_port, self.keystone_port]
        if len(set(tcp)) != len(tcp):
            raise ConfigError(f"lab settings: ironic, glance, http and keystone ports must differ, got {tcp}")
        self._check_conductors(tcp)
        if self.host_init not in ("plain", "systemd"):  # k1prov.lab.hosts.HOST_INITS
            raise ConfigError(f"lab setting host_init: {self.host_init!r} is not plain or systemd")
        if self.hardware not in HARDWARE_KINDS:
            raise ConfigError(f"lab setting hardware: {self.hardware!r} is not one of {', '.join(HARDWARE_KINDS)}")
        if self.auth not in AUTH_MODES:
            raise ConfigError(f"lab setting auth: {self.auth!r} is not one of {', '.join(AUTH_MODES)}")
        if self.token_expiration < 10:
            raise ConfigError(f"lab setting token_expiration: {self.token_expiration} s (need at least 10)")
        if not self.bmc_username or ":" in self.bmc_username:
            raise ConfigError(f"lab setting bmc_username: {self.bmc_username!r} is not usable")
        if not self.bridge or len(self.bridge) > 15 or "/" in self.bridge:
            raise ConfigError(f"lab setting bridge: {self.bridge!r} is not an interface name")
        try:
            iface = ipaddress.IPv4Interface(self.cidr)
        except ValueError as exc:
            raise ConfigError(f"lab setting cidr: {exc}") from None
        if iface.ip in (iface.network.network_address, iface.network.broadcast_address) \
                or iface.network.prefixlen > 26:
            raise ConfigError(f"lab setting cidr: {self.cidr} must be a host address in a /26 or larger")
        if self.disk_gb < 1:
            raise ConfigError(f"lab setting disk_gb: {self.disk_gb} (need at least 1)")
        for flaky in self.flaky_bmcs:
            port, _, rest = flaky.partition(":")
            if not (port.isdigit() and self.bmc_base_port <= int(port) < self.bmc_base_port + self.nodes
                    and re.fullmatch(r"0(\.[0-9]+)?:[0-9]+(\.[0-9]+)?", rest)):
                raise ConfigError(f"lab setting flaky_bmcs: {flaky!r} is not PORT:DROP:DELAY with a "
                                  "BMC port of the lab, DROP below 1 and DELAY in seconds")
        for port in self.dead_bmcs:
            if not self.bmc_base_port < port < self.bmc_base_port + self.nodes:
                # The first BMC is the one `lab up` asks whether the simulator answers.
                raise ConfigError(f"lab setting dead_bmcs: {port} is not a BMC port of the lab "
                                  f"after the first ({self.bmc_base_port + 1}-"
                                  f"{self.bmc_base_port + self.nodes - 1})")

    def _check_conductors(self, tcp: list[int]) -> None:
        if not 0 <= self.conductors <= MAX_CONDUCTORS:
            raise ConfigError(f"lab setting conductors: {self.conductors} (0 for the all-in-one "
                              f"Ironic, or 1 to {MAX_CONDUCTORS})")
        if self.conductor_groups and len(self.conductor_groups) != self.conductors:
            raise ConfigError(f"lab setting conductor_groups: {len(self.conductor_groups)} groups "
                              f"for {self.conductors} conductors (one per conductor)")
        for group in self.conductor_groups:
            # Ironic's own rule for a conductor group (lower case: Ironic folds it).
            if not re.fullmatch(r"[a-z0-9_.-]*", group):
                raise ConfigError(f"lab setting conductor_groups: {group!r} is not a conductor group "
                                  "(lower-case letters, digits, '_', '.', '-')")
        if self.conductor_heartbeat_timeout <= CONDUCTOR_HEARTBEAT_INTERVAL:
            raise ConfigError(f"lab setting conductor_heartbeat_timeout: {self.conductor_heartbeat_timeout} s "
                              f"(must exceed the heartbeat interval, {CONDUCTOR_HEARTBEAT_INTERVAL} s)")
        if not self.conductors:
            return
        if not 1 <= self.mariadb_port <= 65535:
            raise ConfigError(f"lab setting mariadb_port: {self.mariadb_port} is not a port number")
        if self.mariadb_port in tcp:
            raise ConfigError(f"lab settings: the MariaDB port {self.mariadb_port} must differ from {tcp}")
        if self.ironic_port < 256:
            raise ConfigError(f"lab setting ironic_port: {self.ironic_port} (the conductors' addresses "
                              "are made from it: at least 256 with --conductors)")

    def conductor_group(self, i: int) -> str:
        return self.conductor_groups[i - 1] if self.conductor_groups else ""

    def conductor_host(self, i: int) -> str:
        """Conductor i's (1-based) loopback address: its [DEFAULT] host, the `conductor`
        field of its nodes, and where its JSON-RPC server listens (JSON_RPC_PORT).
        127.<ironic_port's two bytes>.<i>: the labs on this machine have different Ironic
        ports, so their conductors never share an address."""
        return f"127.{self.ironic_port >> 8}.{self.ironic_port & 255}.{i}"

    def conductor_conf(self, i: int) -> Path:
        return self.etc_dir / f"ironic-conductor-{i}.conf"

    @property
    def mariadb_datadir(self) -> Path:
        return self.root / "mariadb"

    @property
    def mariadb_socket(self) -> Path:
        return self.run_dir / "mariadb.sock"

    @property
    def mariadb_password_file(self) -> Path:
        """The password of Ironic's MariaDB user."""
        return self.root / "mariadb-password"

    # Paths inside the state directory; one place so that nothing guesses them.
    @property
    def etc_dir(self) -> Path:
        return self.root / "etc"

    @property
    def glance_conf_dir(self) -> Path:
        return self.root / "etc" / "glance"

    @property
    def ironic_conf(self) -> Path:
        return self.root / "etc" / "ironic.conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def http_dir(self) -> Path:
        return self.root / "http"

    @property
    def bmc_state_dir(self) -> Path:
        return self.root / "bmc"

    @property
    def bmc_password_file(self) -> Path:
        return self.root / "bmc-password"

    @property
    def cloud_password_file(self) -> Path:
        """The operator's password: Ironic's htpasswd user (http_basic) or Keystone's admin."""
        return self.root / "cloud-password"

    @property
    def service_password_file(self) -> Path:
        """The password of Ironic's and Glance's own Keystone users (keystone)."""
        return self.root / "service-password"

    @property
    def ironic_htpasswd(self) -> Path:
        return self.etc_dir / "ironic-htpasswd"

    @property
    def keystone_conf(self) -> Path:
        return self.etc_dir / "keystone.conf"

    @property
    def keystone_keys_dir(self) -> Path:
        return self.root / "keystone"

    @property
    def keystone_url(self) -> str:
        return f"http://127.0.0.1:{self.keystone_port}"

    @property
    def clouds_yaml_path(self) -> Path:
        if self.clouds_yaml is not None:
            return self.clouds_yaml
        return Path("~/.config/openstack/clouds.yaml").expanduser()

    @property
    def gateway(self) -> str:
        """This machine's address on the lab bridge."""
        return str(ipaddress.IPv4Interface(self.cidr).ip)

    @property
    def default_deploy_images(self) -> tuple[Path, Path]:
        """The conductor's default deploy kernel and ramdisk: the lab's stand-ins (its
        machines run the agent without booting them), for a node that provide or undeploy
        cleans before `images register` has given it deploy images of its own."""
        return (self.root / "ironic" / "default-deploy.kernel",
                self.root / "ironic" / "default-deploy.initramfs")

    @property
    def tftp_root(self) -> Path:
        return self.root / "ironic" / "tftpboot"

    @property
    def machines_dir(self) -> Path:
        return self.root / "machines"

    @property
    def ironic_url(self) -> str:
        # On the bridge: the agents in the machines call back here (lookup, heartbeat).
        return f"http://{self.gateway}:{self.ironic_port}"

    @property
    def glance_url(self) -> str:
        return f"http://127.0.0.1:{self.glance_port}"

    @property
    def http_url(self) -> str:
        # On the bridge: the agents download the images Ironic stages here.
        return f"http://{self.gateway}:{self.http_port}"

    @property
    def bmc_ports(self) -> range:
        return range(self.bmc_base_port, self.bmc_base_port + self.nodes)


# A lab with flaky BMCs (slow, lossy): what a site with such BMCs sets in ironic.conf. Ironic
# gives ipmitool a per-packet timeout of min_command_interval (-N), which must be above the
# BMC's latency; with use_ipmitool_retries ipmitool re-asks a lost packet itself (-R, as
# many times as fit in command_retry_timeout) instead of Ironic re-running the whole RMCP+
# session set-up, which at 30 % loss almost never gets through 8 exchanges in one try; and
# a set-up that still fails (a late answer taken for the next one) is worth re-running.
FLAKY_IPMI_RETRY_TIMEOUT = 120
FLAKY_IPMI_RETRYABLE = ("Unable to establish IPMI v2 / RMCP+ session",
                        "Error in open session response message",
                        "Set Session Privilege Level to ADMINISTRATOR failed")
# Ironic's wait for a power state after a power action (the default 60 s is a couple of
# status reads through such a BMC).
FLAKY_POWER_STATE_CHANGE_TIMEOUT = 300


def _flaky_ipmi(conf: str, s: LabSettings) -> str:
    """`conf` with the [ipmi] and [conductor] settings for the lab's flaky BMCs, if any."""
    if not s.flaky_bmcs:
        return conf
    delay = max(float(f.split(":")[2]) for f in s.flaky_bmcs)
    # The healthy lab's one [ipmi] line (render_ironic_conf), replaced.
    healthy = "\nmin_command_interval = 1\n"
    assert conf.count(healthy) == 1
    ipmi = "\n".join(["",
                      "# The lab's flaky BMCs (LabSettings.flaky_bmcs): see config.FLAKY_IPMI_RETRYABLE.",
                      f"min_command_interval = {math.ceil(delay) + 1}",
                      "use_ipmitool_retries = true",
                      f"command_retry_timeout = {FLAKY_IPMI_RETRY_TIMEOUT}",
                      *(f"additional_retryable_ipmi_errors = {e}" for e in FLAKY_IPMI_RETRYABLE), ""])
    conf = conf.replace(healthy, ipmi)
    return conf.replace("[conductor]\n", "[conductor]\npower_state_change_timeout = "
                        f"{FLAKY_POWER_STATE_CHANGE_TIMEOUT}\n", 1)


def _vm_hardware(conf: str, s: LabSettings) -> str:
    """`conf` for the VM lab's machines (hardware "vm"): they boot Ironic's iPXE script over
    HTTP (the lab's dnsmasq chainloads http_url/boot.ipxe), then the real agent ramdisk with
    its console on the serial port. A TCG machine takes minutes from power-on to the agent's
    lookup, so the agent's own power-off is waited for longer than on simulated machines."""
    if s.hardware != "vm":
        return conf
    pxe = "[pxe]\n"
    assert conf.count(pxe) == 1
    conf = conf.replace(pxe, f"[pxe]\nkernel_append_params = {VM_KERNEL_APPEND}\n"
                             "# iPXE waits this long (s) for each HTTP download before it gives up.\n"
                             "ipxe_timeout = 120\n", 1)
    conf = conf.replace("post_deploy_get_power_state_retries = 30\n",
                        "post_deploy_get_power_state_retries = 120\n", 1)
    boot = "enabled_boot_interfaces = pxe,fake,ipxe\n"
    assert conf.count(boot) == 1
    # redfish-virtual-media (issue 21): last, so that it is never a node's default (the
    # redfish hardware type lists it last too); a node asks for it in the inventory.
    conf = conf.replace(boot, "enabled_boot_interfaces = pxe,fake,ipxe,redfish-virtual-media\n"
                              "# The deploy ISO for BIOS machines (Debian's isolinux; ldlinux.c32 is found "
                              "in\n# syslinux-common's /usr/lib/syslinux/modules/bios).\n"
                              f"isolinux_bin = {VM_ISOLINUX_BIN}\n", 1)
    return conf + textwrap.dedent(f"""
        [redfish]
        # No Swift here: the deploy ISO is published under [deploy] http_root and the BMC
        # (sushy-tools, on this machine) downloads it from http_url.
        use_swift = false
        # The ISO's kernel line: the same console and ramfs as the iPXE boot's.
        kernel_append_params = {VM_KERNEL_APPEND}
        """)


def _split_ironic(conf: str, s: LabSettings, db_password: str) -> str:
    """`conf` for an API and s.conductors conductors in separate processes (conductors > 0):
    JSON-RPC between them, the lab's MariaDB, a conductor's death seen in seconds. What is
    each conductor's own (host, JSON-RPC port, group) is in render_conductor_conf."""
    if not s.conductors:
        return conf
    from k1prov.lab.mariadb import connection_url

    aio = "# API and conductor in one process; no message bus.\nrpc_transport = none\n"
    sqlite = f"connection = sqlite:///{s.root / 'ironic.sqlite'}\n"
    assert conf.count(aio) == 1 and conf.count(sqlite) == 1
    conf = conf.replace(aio, "# ironic-api and the conductors in their own processes "
                             "(`lab up --conductors`).\nrpc_transport = json-rpc\n"
                             f"hash_ring_reset_interval = {CONDUCTOR_TAKEOVER_CHECK}\n")
    conf = conf.replace(sqlite, f"connection = {connection_url(port=s.mariadb_port, password=db_password)}\n")
    conf = conf.replace("[conductor]\n", "[conductor]\n"
                        f"heartbeat_interval = {CONDUCTOR_HEARTBEAT_INTERVAL}\n"
                        f"heartbeat_timeout = {s.conductor_heartbeat_timeout}\n"
                        f"check_provision_state_interval = {CONDUCTOR_TAKEOVER_CHECK}\n", 1)
    return conf + textwrap.dedent(f"""
        [json_rpc]
        # Loopback only: the API and the conductors of this machine call each other without
        # credentials, whatever the lab's auth mode for callers of the API.
        auth_strategy = noauth
        auth_type = none
        port = {JSON_RPC_PORT}
        """)


def conductor_dirs(s: LabSettings, i: int) -> dict[str, Path]:
    """Conductor i's own state, image caches and HTTP staging directory. A conductor's image
    caches are its own (on a site each conductor has its own disk): two conductors
    converting the same image into one master cache break each other's hard links
    ("Could not link image … .converted")."""
    state = s.root / "ironic" / f"conductor-{i}"
    return {"state": state, "images": state / "images", "master_images": state / "master_images",
            "tftp_master": s.tftp_root / f"master_images-conductor-{i}",
            "http_root": s.http_dir / f"conductor-{i}"}


def render_conductor_conf(s: LabSettings, i: int) -> str:
    """Conductor i's own settings, read after ironic.conf (`--config-file` twice)."""
    d = conductor_dirs(s, i)
    return textwrap.dedent(f"""\
        # Written by k1prov lab; rewritten on every `k1prov lab up`. Conductor {i} of {s.conductors}.
        [DEFAULT]
        host = {s.conductor_host(i)}
        state_path = {d["state"]}

        [json_rpc]
        host_ip = {s.conductor_host(i)}

        [conductor]
        conductor_group = {s.conductor_group(i)}

        [pxe]
        # The PXE configs stay in the one tftp_root the lab's machines boot from.
        images_path = {d["images"]}
        instance_master_path = {d["master_images"]}
        tftp_master_path = {d["tftp_master"]}

        [deploy]
        # One HTTP server for the lab, a directory per conductor (a site: one per conductor).
        http_root = {d["http_root"]}
        http_url = {s.http_url}/conductor-{i}
        """)


def _keystone_auth_lines(s: LabSettings, *, user: str, password: str) -> str:
    """A service user's password auth, as keystonemiddleware and keystoneauth read it."""
    return textwrap.dedent(f"""\
        auth_type = password
        auth_url = {s.keystone_url}/v3
        username = {user}
        password = {password}
        project_name = {SERVICE_PROJECT}
        user_domain_name = Default
        project_domain_name = Default
        region_name = {KEYSTONE_REGION}
        """)


def _authtoken_section(s: LabSettings, *, user: str, password: str) -> str:
    """[keystone_authtoken]: keystonemiddleware validates each request's token with Keystone."""
    return ("[keystone_authtoken]\n"
            f"www_authenticate_uri = {s.keystone_url}/v3\n"
            # No memcached in the lab: validated tokens are cached in the process.
            "memcached_servers =\n"
            + _keystone_auth_lines(s, user=user, password=password))


# The operator is Keystone's admin with a project-scoped token, which Glance needs too
# (Glance has no system scope). Ironic's new defaults give a project admin only the nodes
# its project owns and keep enrolling for system scope, so the lab runs Ironic's legacy
# rules ("role:admin" may do everything): one clouds.yaml entry then serves both APIs.
_IRONIC_KEYSTONE_POLICY = "enforce_new_defaults = false\nenforce_scope = false\n"
# Ironic 39's rules that have no legacy form and want a system-scoped token: with
# Keystone the lab lets its (project-scoped) admin do these too. The list is what
# ironic.common.policy.list_policies() gives for rules without a deprecated_rule whose
# check string names system_scope (k1prov sets shards: baremetal:node:update:shard).
IRONIC_SYSTEM_ONLY_RULES = (
    "baremetal:node:set_provision_state:clean_steps", "baremetal:node:set_provision_state:service_steps",
    "baremetal:node:update:shard", "baremetal:shards:get", "baremetal:node:update:parent_node",
    "baremetal:node:update:disable_power_off", "baremetal:node:firmware:get",
    "baremetal:node:vmedia:attach", "baremetal:node:vmedia:detach", "baremetal:node:vmedia:get",
    "baremetal:runbook:get", "baremetal:runbook:list_all", "baremetal:runbook:create",
    "baremetal:runbook:delete", "baremetal:runbook:update", "baremetal:runbook:update:public",
    "baremetal:runbook:update:owner", "baremetal:runbook:use", "baremetal:inspection_rule:get",
    "baremetal:inspection_rule:list_all", "baremetal:inspection_rule:create",
    "baremetal:inspection_rule:update", "baremetal:inspection_rule:delete",
)


def render_ironic_policy(s: LabSettings) -> str:
    if s.auth != "keystone":
        return IRONIC_POLICY
    return "".join(f'"{rule}": "role:admin"\n' for rule in IRONIC_SYSTEM_ONLY_RULES)


def _ironic_auth(s: LabSettings, service_password: str) -> tuple[str, str, str]:
    """([DEFAULT] lines, [glance] auth lines, an extra section) of ironic.conf for s.auth."""
    if s.auth == "http_basic":
        # Glance stays without auth in this mode (loopback only): the conductor needs none.
        return (f"auth_strategy = http_basic\nhttp_basic_auth_user_file = {s.ironic_htpasswd}\n",
                "auth_type = none\n", "")
    if s.auth == "keystone":
        return ("auth_strategy = keystone\n",
                _keystone_auth_lines(s, user="ironic", password=service_password),
                _authtoken_section(s, user="ironic", password=service_password))
    return "auth_strategy = noauth\n", "auth_type = none\n", ""


def render_ironic_conf(s: LabSettings, *, service_password: str = "", db_password: str = "") -> str:
    """db_password: the one of Ironic's MariaDB user (conductors > 0)."""
    state = s.root / "ironic"
    default_auth, glance_auth, extra = _ironic_auth(s, service_password)
    # Without them (conductor_deploy_images off) a node has only the deploy images in its own
    # driver_info: a real Ironic configured so (issue 21).
    no_default = "" if s.conductor_deploy_images else "# (LabSettings.conductor_deploy_images off) "
    return _split_ironic(_vm_hardware(_flaky_ipmi(textwrap.dedent(f"""\
        # Written by k1prov lab; rewritten on every `k1prov lab up`.
        [DEFAULT]
        {{default_auth}}
        # API and conductor in one process; no message bus.
        rpc_transport = none
        host = k1prov-lab
        my_ip = {s.gateway}
        state_path = {state}
        log_dir =
        use_stderr = true
        debug = false
        # redfish: machines behind a Redfish BMC (the VM lab's sushy-tools), booted by PXE
        # or iPXE like the IPMI ones; the sushy library it needs is in the lab venv.
        enabled_hardware_types = ipmi,redfish,fake-hardware
        enabled_deploy_interfaces = direct,fake,ramdisk
        enabled_boot_interfaces = pxe,fake,ipxe
        enabled_power_interfaces = fake,ipmitool,redfish
        enabled_management_interfaces = fake,ipmitool,redfish,noop
        # agent: Ironic's built-in in-band inspection (`k1prov nodes inspect`); first, so
        # that it is the ipmi nodes' default.
        enabled_inspect_interfaces = agent,fake,no-inspect
        enabled_network_interfaces = noop,flat
        default_network_interface = noop
        enabled_console_interfaces = fake,no-console
        enabled_vendor_interfaces = fake,no-vendor
        enabled_raid_interfaces = fake,no-raid
        enabled_bios_interfaces = fake,no-bios
        enabled_rescue_interfaces = fake,no-rescue
        enabled_storage_interfaces = fake,noop
        enabled_firmware_interfaces = fake,no-firmware

        [api]
        # The bridge address: the machines' agents call back here; k1prov too.
        host_ip = {s.gateway}
        port = {s.ironic_port}
        api_workers = 1

        [database]
        connection = sqlite:///{s.root / "ironic.sqlite"}

        [dhcp]
        dhcp_provider = none

        [conductor]
        automated_clean = {str(s.automated_clean).lower()}
        # Bifrost's way: a conductor-wide deploy image, so that a node enrolled before
        # `images register` gave it one is cleaned on its way to available.
        {no_default}deploy_kernel = file://{s.default_deploy_images[0]}
        {no_default}deploy_ramdisk = file://{s.default_deploy_images[1]}
        file_url_allowed_paths = /var/lib/ironic,{s.root / "ironic"}
        # The lab's BMCs are the only truth about power; Ironic must not "correct" them.
        sync_power_state_interval = -1
        # `k1prov lab down` should not wait a minute for the conductor.
        graceful_shutdown_timeout = 5
        # An agent that never calls back fails the deploy after this (k1prov's own
        # deploy timeout, settings.Timeouts.deploy, is the one operators see first).
        deploy_callback_timeout = 1800

        [ipmi]
        # 0 divides by zero inside Ironic; the default 5 makes one power action take ~15 s.
        min_command_interval = 1

        [glance]
        {{glance_auth}}
        endpoint_override = {s.glance_url}
        # A call on a pooled connection that Glance's server has just closed after its
        # keep-alive fails with "Remote end closed connection" (seen once in 20 deploys at
        # load 20); a production conductor retries those as well.
        num_retries = 2

        [service_catalog]
        auth_type = none
        # What Ironic writes as ipa-api-url into the PXE config: the agents' way back.
        endpoint_override = {s.ironic_url}

        [deploy]
        http_root = {s.http_dir}
        http_url = {s.http_url}
        default_boot_mode = bios
        fast_track = false
        # Automated cleaning erases partition tables and filesystem signatures only (the
        # agent's erase_devices_metadata, its default priority), never every byte.
        erase_devices_priority = 0
        erase_devices_metadata_priority = 99

        [pxe]
        tftp_server = {s.gateway}
        tftp_root = {s.tftp_root}
        tftp_master_path = {s.tftp_root / "master_images"}
        images_path = {state / "images"}
        instance_master_path = {state / "master_images"}

        [agent]
        # The agent downloads the image from Ironic's HTTP server, not from Glance.
        image_download_source = http
        # Every deploy's agent log (Ironic asks the agent for it): k1prov's run records
        # and `cluster status` point at these files.
        deploy_logs_collect = always
        deploy_logs_storage_backend = local
        deploy_logs_local_path = {s.root / "deploy-logs"}
        certificates_path = {state / "agent-certificates"}
        # After the agent's own poweroff, Ironic polls the BMC until it reads "off" (the
        # lab presses the machine's power button within a second): poll every second
        # rather than every 5 s, for as long as the default (30 s) before a hard off.
        post_deploy_get_power_state_retries = 30
        post_deploy_get_power_state_retry_interval = 1

        [inspector]
        # Built-in agent inspection. A node with ports: the boot is Ironic's (PXE config by
        # its ports, with ipa-inspection-callback-url = ironic_url/v1/continue_inspection).
        # A node without (enrolled without MACs): Ironic cannot write a config by MAC, so it
        # only sets PXE and powers on, and the site's PXE default boots the agent (the lab
        # writes tftpboot/pxelinux.cfg/default: k1prov.lab.pxe); Ironic matches the report
        # by the BMC's LAN address the agent sends (never a 127.x one) and makes the booted
        # NIC's port (add_ports = pxe).
        require_managed_boot = false
        # memory, cpus, root-device: properties memory_mb, cpus, local_gb (role fit reads
        # them); ports: the booted NIC's port (add_ports = pxe), kept with the others.
        hooks = $default_hooks,memory,cpus,root-device
        # Only ipmi BMCs here: nothing to read MACs from before the agent boots.
        pre_create_ports = false
        # Not a discovery site: an unknown machine's data is refused, never enrolled.
        [auto_discovery]
        enabled = false

        [oslo_concurrency]
        lock_path = {state / "locks"}

        [oslo_policy]
        policy_file = {s.etc_dir / "ironic-policy.yaml"}
        {{policy}}
        """).replace("{default_auth}\n", default_auth).replace("{glance_auth}\n", glance_auth) \
        .replace("{policy}\n", _IRONIC_KEYSTONE_POLICY if s.auth == "keystone" else "") + \
        ("\n" + extra if extra else ""), s), s), s, db_password)


def render_glance_conf(s: LabSettings, *, service_password: str = "") -> str:
    data = s.root / "glance-images"
    authtoken = ("\n" + _authtoken_section(s, user="glance", password=service_password)
                 if s.auth == "keystone" else "")
    return textwrap.dedent(f"""\
        # Written by k1prov lab; rewritten on every `k1prov lab up`.
        [DEFAULT]
        enabled_backends = local:file
        use_stderr = true
        debug = false

        [database]
        connection = sqlite:///{s.root / "glance.sqlite"}

        [paste_deploy]
        config_file = {s.glance_conf_dir / "glance-api-paste.ini"}

        [glance_store]
        default_backend = local

        [local]
        filesystem_store_datadir = {data / "local"}

        [os_glance_staging_store]
        filesystem_store_datadir = {data / "staging"}

        [os_glance_tasks_store]
        filesystem_store_datadir = {data / "tasks"}

        [oslo_policy]
        policy_file = {s.glance_conf_dir / "policy.yaml"}

        [oslo_concurrency]
        lock_path = {s.root / "glance-locks"}
        """) + authtoken


def render_glance_paste(s: LabSettings) -> str:
    """Glance's pipeline: with Keystone, the token is checked (authtoken) and becomes the
    request's context; otherwise every request gets the unauthenticated admin context."""
    text = GLANCE_PASTE_FILE.read_text()
    if s.auth != "keystone":
        return text
    return text.replace(" unauthenticated-context rootapp", " authtoken context rootapp") + (
        "\n[filter:authtoken]\n"
        "paste.filter_factory = keystonemiddleware.auth_token:filter_factory\n"
        "delay_auth_decision = true\n"
        "\n[filter:context]\n"
        "paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory\n")


# Key repositories of Keystone under LabSettings.keystone_keys_dir.
KEYSTONE_KEY_DIRS = ("fernet-keys", "fernet-receipts", "credential-keys")


def render_keystone_conf(s: LabSettings) -> str:
    keys = s.keystone_keys_dir
    return textwrap.dedent(f"""\
        # Written by k1prov lab; rewritten on every `k1prov lab up`.
        [DEFAULT]
        use_stderr = true
        debug = false

        [database]
        connection = sqlite:///{s.root / "keystone.sqlite"}

        [identity]
        # bcrypt's own limit: Keystone warns on every login while the limit is above it.
        max_password_length = 72
        # bcrypt's fewest rounds: every token costs a hash check (0.3 s each at the default
        # 12, on this machine), and the lab's passwords are random 24-character strings
        # that no offline guessing reaches, whatever the rounds.
        password_hash_rounds = 4

        [token]
        provider = fernet
        expiration = {s.token_expiration}

        [fernet_tokens]
        key_repository = {keys / "fernet-keys"}

        [fernet_receipts]
        key_repository = {keys / "fernet-receipts"}

        [credential]
        key_repository = {keys / "credential-keys"}
        """)


def rendered_files(s: LabSettings, *, service_password: str = "", db_password: str = "") -> dict[Path, str]:
    """Every configuration file of the lab, path -> content. service_password: the one of
    Ironic's and Glance's Keystone users (auth "keystone"); db_password: Ironic's MariaDB
    user's (conductors > 0)."""
    files = {
        s.ironic_conf: render_ironic_conf(s, service_password=service_password, db_password=db_password),
        s.glance_conf_dir / "glance-api.conf": render_glance_conf(s, service_password=service_password),
        s.glance_conf_dir / "glance-api-paste.ini": render_glance_paste(s),
        # With Keystone, Glance's own rules (an admin may do everything, a project its images).
        s.glance_conf_dir / "policy.yaml": "{}\n" if s.auth == "keystone" else GLANCE_POLICY,
        s.etc_dir / "ironic-policy.yaml": render_ironic_policy(s),
    }
    if s.auth == "keystone":
        files[s.keystone_conf] = render_keystone_conf(s)
    for i in range(1, s.conductors + 1):
        files[s.conductor_conf(i)] = render_conductor_conf(s, i)
    return files


def write_configs(s: LabSettings, *, service_password: str = "", db_password: str = "") -> None:
    """Write the configuration files and the directories they name (only what changed).
    Every file is 0600: with Keystone, Ironic's and Glance's hold a service password."""
    for d in (s.etc_dir, s.glance_conf_dir, s.log_dir, s.run_dir, s.http_dir, s.bmc_state_dir,
              s.tftp_root / "master_images", s.root / "ironic" / "locks", s.root / "deploy-logs",
              s.root / "ironic" / "images", s.root / "ironic" / "master_images",
              s.root / "ironic" / "agent-certificates", s.machines_dir,
              s.root / "glance-images" / "local", s.root / "glance-images" / "staging",
              s.root / "glance-images" / "tasks", s.root / "glance-locks"):
        d.mkdir(parents=True, exist_ok=True)
    if s.auth == "keystone":
        # Keystone's signing keys: its own user only (it warns about anything wider).
        for d in (s.keystone_keys_dir, *(s.keystone_keys_dir / n for n in KEYSTONE_KEY_DIRS)):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            d.chmod(0o700)
    if s.conductors:
        # MariaDB's datadir: its own user only, as mariadb-install-db leaves it.
        s.mariadb_datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for i in range(1, s.conductors + 1):
        for d in conductor_dirs(s, i).values():
            d.mkdir(parents=True, exist_ok=True)
    for path, text in rendered_files(s, service_password=service_password, db_password=db_password).items():
        write_if_changed(path, text, mode=0o600)
    # Imported here: the image catalog is the provisioning side's (the stand-ins' bytes are
    # its own); nothing of it is needed to render the configuration files.
    from k1prov.imagecatalog import write_lab_deploy_image

    kernel, ramdisk = s.default_deploy_images
    write_lab_deploy_image(kernel, "lab-deploy-kernel")
    write_lab_deploy_image(ramdisk, "lab-deploy-ramdisk")
