"""The lab's services: real Ironic and Glance (and Keystone when they authenticate with
it), a static HTTP server, the BMC simulator.

`Lab(settings).up()` installs what is missing, writes the configuration, starts what is
not running and waits until every service answers; `down()` stops what `up` started.
Both are idempotent, and a second `up` on a running lab only checks it.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from k1prov.atomic_file import write_if_changed
from k1prov.errors import LabError
from k1prov.lab import checks, keystone, mariadb, procs
from k1prov.lab.clouds import write_cloud_entry
from k1prov.lab.config import (BMCSIM_SCRIPT, HTTP_BASIC_USER, JSON_RPC_PORT, REQUIREMENTS_FILE,
                               LabSettings, write_configs)
from k1prov.lab.inventory_yaml import render_inventory
from k1prov.lab.netns import LabNetwork, bmc_lan_address
from k1prov.lab.pxe import write_inspection_default
from k1prov.lab.secret_files import ensure_secret, write_htpasswd
from k1prov.lab.venv import ensure_venv
from k1prov.settings import DEFAULT_TIMEOUTS, Timeouts

# Order of start; `down` stops in the reverse order (the BMCs outlive Ironic's last call).
# The reconciler is the machines' hardware logic (k1prov.lab.machine): it starts last and
# stops first. Stopping (or restarting) it leaves the machines as they are; `down` then
# powers them off (`--power-off`), as a lab going away cuts their power.
# Ironic is either the all-in-one "ironic" (SQLite) or, with `--conductors N`, "mariadb",
# N conductors (CONDUCTOR_SERVICE + "-1" ... "-N") and "ironic-api": the database outlives
# the conductors, which finish their work in it when stopped.
SERVICES = ("bmcsim", "http", "keystone", "mariadb", "glance", "ironic", "ironic-conductor",
            "ironic-api", "reconciler")
CONDUCTOR_SERVICE = "ironic-conductor"
# Keystone runs only in the lab's "keystone" auth mode; it answers before Glance and Ironic
# start, and its catalog is filled then.
OPTIONAL_SERVICES = {"keystone": "keystone"}
# Services that only a lab with separate conductors runs (LabSettings.conductors > 0), and
# the one it does not run.
SPLIT_IRONIC_SERVICES = ("mariadb", "ironic-api", CONDUCTOR_SERVICE)
ALL_IN_ONE_IRONIC = "ironic"
# The simulated machines' BMCs and hardware logic: a lab of real (virtual) machines
# (LabSettings.hardware "vm", k1prov.lab.vm) has its own BMCs and runs neither.
SIMULATED_HARDWARE_SERVICES = ("bmcsim", "reconciler")
# `down`: powering every machine off (each stops its agent or host and releases its disk;
# a few seconds for a lab of 40 machines, most of them off).
POWER_OFF_TIMEOUT = 300.0
# Run as `python -m`; imported lazily so that the package does not load it before runpy.
RECONCILER_MODULE = "k1prov.lab.reconciler"
# One answer check in `status` (a healthy service answers in milliseconds).
CHECK_TIMEOUT = 3.0
# Pause between two answer checks while a service starts.
START_POLL = 0.2
# Environment variables a lab service must not inherit: the project venv, proxies (the
# services only talk to 127.0.0.1) and OS_* cloud selection of the user's shell.
_DROPPED_ENV_PREFIXES = ("OS_",)
_DROPPED_ENV = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "http_proxy", "https_proxy",
                "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"}


def _listening_on(address: str) -> bool:
    """Whether a TCP socket listens on `address` (another lab's Ironic on a shared bridge)."""
    import ipaddress
    import socket
    import struct

    want = struct.unpack("<I", socket.inet_aton(str(ipaddress.IPv4Address(address))))[0]
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.split(":")[0], 16) == want:
            return True
    return False


AGENT_PLUGIN = Path(__file__).with_name("ipa_hwm.py")
AGENT_PLUGIN_MODULE = "k1prov_lab_ipa"


def install_agent_plugin(venv: Path) -> None:
    """The lab machines' hardware manager (k1prov/lab/ipa_hwm.py) as module k1prov_lab_ipa
    with its ironic_python_agent.hardware_managers entry point, in the lab venv."""
    sites = sorted(venv.glob("lib/python3*/site-packages"))
    if not sites:
        raise LabError(f"lab virtualenv {venv} has no site-packages")
    site = sites[0]
    dist = site / f"{AGENT_PLUGIN_MODULE}-1.0.dist-info"
    files = {
        site / f"{AGENT_PLUGIN_MODULE}.py": AGENT_PLUGIN.read_text(),
        dist / "METADATA": f"Metadata-Version: 2.1\nName: {AGENT_PLUGIN_MODULE}\nVersion: 1.0\n",
        dist / "entry_points.txt": ("[ironic_python_agent.hardware_managers]\n"
                                    f"k1prov_lab = {AGENT_PLUGIN_MODULE}:LabMachineHardwareManager\n"),
        dist / "top_level.txt": AGENT_PLUGIN_MODULE + "\n",
    }
    files[dist / "RECORD"] = "".join(f"{p.relative_to(site)},,\n" for p in files) + \
        f"{(dist / 'RECORD').relative_to(site)},,\n"
    dist.mkdir(exist_ok=True)
    for path, text in files.items():
        write_if_changed(path, text)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str
    pid: int | None
    running: bool
    answers: bool
    detail: str = ""
    # Resident memory of the service's whole process group (KiB), when running.
    rss_kib: int | None = None


@dataclass
class LabStatus:
    services: list[ServiceStatus]

    @property
    def ok(self) -> bool:
        return bool(self.services) and all(s.running and s.answers for s in self.services)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "services": [asdict(s) for s in self.services]}


class Lab:
    def __init__(self, settings: LabSettings, *, timeouts: Timeouts = DEFAULT_TIMEOUTS):
        self.settings = settings
        self.timeouts = timeouts

    # ---- public verbs -------------------------------------------------------------

    @property
    def services(self) -> tuple[str, ...]:
        """The services of this lab, in order of start (its auth mode decides whether Keystone
        is one, its `conductors` whether Ironic is one process or a database, conductors and
        an API)."""
        s = self.settings
        names: list[str] = []
        for n in SERVICES:
            if OPTIONAL_SERVICES.get(n, s.auth) != s.auth:
                continue
            if n == ALL_IN_ONE_IRONIC and s.conductors or n in SPLIT_IRONIC_SERVICES and not s.conductors:
                continue
            if n in SIMULATED_HARDWARE_SERVICES and s.hardware != "simulated":
                continue
            names += conductor_services(s.conductors) if n == CONDUCTOR_SERVICE else [n]
        return tuple(names)

    def _known_services(self) -> tuple[str, ...]:
        """Every service this lab may have running, whatever its settings now, in order of
        start: the conductors of an earlier `up` with more of them included."""
        run = self.settings.run_dir
        recorded = [int(p.stem.rpartition("-")[2]) for p in run.glob(f"{CONDUCTOR_SERVICE}-*.json")
                    if p.stem.rpartition("-")[2].isdigit()] if run.is_dir() else []
        count = max([self.settings.conductors, *recorded])
        return tuple(m for n in SERVICES
                     for m in (conductor_services(count) if n == CONDUCTOR_SERVICE else [n]))

    def up(self, *, progress: Callable[[str], None] | None = None) -> LabStatus:
        s = self.settings
        say = progress or (lambda _msg: None)
        ensure_venv(s.venv, REQUIREMENTS_FILE, timeout=self.timeouts.lab_install, progress=say)
        self._ensure_password()
        service_password = db_password = ""
        if s.auth != "none":
            ensure_secret(s.cloud_password_file)
        if s.auth == "keystone":
            service_password = ensure_secret(s.service_password_file)
        if s.conductors:
            db_password = ensure_secret(s.mariadb_password_file)
        write_configs(s, service_password=service_password, db_password=db_password)
        if s.auth == "http_basic":
            self._write_htpasswd()
        # A service of another auth mode (Keystone after `--auth none`) or Ironic shape (the
        # all-in-one Ironic after `--conductors 2`, a third conductor after `--conductors 2`)
        # goes.
        stopped_other = False
        for name in reversed(self._known_services()):
            if name not in self.services and procs.stop(s.run_dir, name, grace=self._stop_grace()):
                say(f"stopped {name} (not used with --auth {s.auth} --conductors {s.conductors})")
                stopped_other = True

        specs = {name: self._spec(name) for name in self.services}
        running = {}
        restarted = set()
        for name, spec in specs.items():
            rec = procs.read_running(s.run_dir, name)
            if rec is not None and rec.fingerprint != spec.fingerprint:
                say(f"restarting {name} (its settings changed)")
                procs.stop(s.run_dir, name, grace=self._stop_grace())
                restarted.add(name)
                rec = None
            running[name] = rec
        to_start = [name for name in self.services if running[name] is None]
        # Check every port before starting anything: no half-started lab on a conflict.
        # The other shape's Ironic ("ironic" for "ironic-api") held the same port a moment ago.
        self._check_ports_free([specs[n] for n in to_start],
                               just_stopped=restarted | (set(to_start) if stopped_other else set()))
        install_agent_plugin(s.venv)
        if s.auth == "keystone":
            keystone.install_wsgi_module(s.venv)
        # Ironic and the image server listen on the bridge's address, the BMCs on their LAN
        # addresses too: they must exist first.
        LabNetwork(bridge=s.bridge, cidr=s.cidr).ensure(
            timeout=self.timeouts.lab_service, local_addresses=self._bmc_lan_addresses())
        if "bmcsim" in self.services:
            # What the site's PXE boots a machine Ironic wrote no config for (a node without
            # ports, inspected: unmanaged inspection).
            write_inspection_default(s.tftp_root, kernel=s.default_deploy_images[0],
                                     ramdisk=s.default_deploy_images[1], ironic_url=s.ironic_url)
        started = {}
        if s.conductors:
            # Ironic's database must answer before its schema is made and any Ironic starts.
            mariadb.initialize(s.mariadb_datadir, timeout=self.timeouts.lab_service,
                               log=s.log_dir / "mariadb-install.log")
            if "mariadb" in to_start:
                say("starting mariadb")
                started["mariadb"] = procs.start(specs["mariadb"], run_dir=s.run_dir, log_dir=s.log_dir)
            self._wait_answers("mariadb", started.get("mariadb") or running["mariadb"],
                               fresh="mariadb" in started)
            mariadb.ensure_database(s.mariadb_socket, password=db_password,
                                    timeout=self.timeouts.lab_service, log=s.log_dir / "mariadb-setup.log")
        self._sync_databases(say)
        if s.auth == "keystone":
            # Glance and Ironic find their users in Keystone; k1prov finds them in its catalog.
            if "keystone" in to_start:
                say("starting keystone")
                started["keystone"] = procs.start(specs["keystone"], run_dir=s.run_dir, log_dir=s.log_dir)
            self._wait_answers("keystone", started.get("keystone") or running["keystone"],
                               fresh="keystone" in started)
            keystone.register(s, admin_password=self.cloud_password(), service_password=service_password,
                              timeout=self.timeouts.lab_service)
        for name in to_start:
            if name not in started:
                say(f"starting {name}")
                started[name] = procs.start(specs[name], run_dir=s.run_dir, log_dir=s.log_dir)
        for name in self.services:
            self._wait_answers(name, started.get(name) or running[name], fresh=name in started)
        path = write_cloud_entry(s, password=self.cloud_password() if s.auth != "none" else "")
        if started:
            say(f"lab is up; clouds.yaml entry {s.cloud_name!r} in {path}")
        return self.status()

    def _bmc_lan_addresses(self) -> tuple[str, ...]:
        """Each simulated BMC's LAN address, in port order (none in the VM lab)."""
        s = self.settings
        if "bmcsim" not in self.services:
            return ()
        return tuple(bmc_lan_address(p) for p in range(s.bmc_base_port, s.bmc_base_port + s.nodes))

    def down(self) -> None:
        s = self.settings
        grace = self._stop_grace()
        known = self._known_services()
        was_up = any(procs.read_running(s.run_dir, name) is not None for name in known)
        failed = ""
        for name in reversed(known):
            procs.stop(s.run_dir, name, grace=grace)
            if name == "reconciler" and was_up and name in self.services:
                failed = self._power_off_machines()
        ports = tuple(p for name in self.services for p in self._ports(name))
        busy = procs.wait_ports_free(ports, timeout=self.timeouts.lab_service)
        # The bridge goes with the lab that ran on it, unless machines of another lab are
        # still attached (labs on other ports may share a bridge).
        network = LabNetwork(bridge=s.bridge, cidr=s.cidr)
        attached = Path(f"/sys/class/net/{s.bridge}/brif")
        if (was_up and network.exists() and not (attached.is_dir() and any(attached.iterdir()))
                and not _listening_on(s.gateway)):
            network.remove(timeout=self.timeouts.lab_service)
        if busy:
            listing = ", ".join(f"{proto} {port}" for proto, port in busy)
            raise LabError(f"lab stopped but ports are still in use: {listing}")
        if failed:
            raise LabError(f"lab stopped but its machines were not all powered off: {failed}")

    def status(self) -> LabStatus:
        return LabStatus([self._service_status(name) for name in self.services])

    def _power_off_machines(self) -> str:
        """Every machine off (the reconciler's `--power-off`, logged with it); why not, or ""."""
        s = self.settings
        spec = self._spec("reconciler")
        s.log_dir.mkdir(parents=True, exist_ok=True)
        with open(s.log_dir / "reconciler.log", "ab") as log:
            try:
                rc = subprocess.run([*spec.argv, "--power-off"], cwd=spec.cwd, env=dict(spec.env),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=POWER_OFF_TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                return f"not done in {POWER_OFF_TIMEOUT:.0f} s; log: {s.log_dir / 'reconciler.log'}"
        return "" if rc == 0 else f"exit {rc}; log: {s.log_dir / 'reconciler.log'}"

    def cloud_password(self) -> str:
        """The operator's password for Ironic (http_basic) or Keystone (keystone)."""
        return _read_password(self.settings.cloud_password_file, "cloud",
                              f"k1prov lab up --auth {self.settings.auth}")

    def bmc_password(self) -> str:
        return _read_password(self.settings.bmc_password_file, "BMC", "k1prov lab up")

    def prepare_hosts(self, *, progress: Callable[[str], None] | None = None) -> tuple[Path, Path]:
        """What lab hosts boot from and how the operator logs in: the lab's user image
        (built once into the image cache) and an SSH key pair in root/ssh/."""
        from k1prov.imagecatalog import default_places
        from k1prov.lab.image import build_lab_image

        say = progress or (lambda _msg: None)
        key = self.settings.root / "ssh" / "id_ed25519"
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k1prov-lab",
                            "-f", str(key)], check=True, timeout=self.timeouts.lab_service)
            say(f"operator SSH key {key}")
        cache = Path(os.path.expanduser(default_places()["image_cache"]))
        image = build_lab_image(cache, timeout=self.timeouts.lab_image_build, progress=say)
        return image, key

    def inventory_yaml(self, *, nodes: int | None = None, cluster: str = "lab", mesos: bool = False) -> str:
        return render_inventory(self.settings, nodes=nodes, cluster=cluster, mesos=mesos)

    # ---- setup steps ----------------------------------------------------------------

    def _stop_grace(self) -> float:
        return min(procs.STOP_GRACE, self.timeouts.lab_service)

    def _ensure_password(self) -> None:
        """Generate the BMC password once; 0600 from the first byte on."""
        # IPMI 2.0 passwords are at most 20 bytes; 16 URL-safe characters fit.
        ensure_secret(self.settings.bmc_password_file, nbytes=12)

    def _write_htpasswd(self) -> None:
        """Ironic's htpasswd file with the operator's user (bcrypt, the only hash Ironic's
        http_basic accepts; hashed by the lab venv's bcrypt, Ironic's own dependency)."""
        s = self.settings
        write_htpasswd(s.venv, s.ironic_htpasswd, username=HTTP_BASIC_USER, password=self.cloud_password(),
                       timeout=self.timeouts.lab_service, what="the lab's Ironic password")

    def _sync_databases(self, say: Callable[[str], None]) -> None:
        s = self.settings
        bin_ = s.venv / "bin"
        steps = [
            # With several conductors, MariaDB keeps each database in a directory of its datadir.
            ("ironic", s.mariadb_datadir / mariadb.DATABASE if s.conductors else s.root / "ironic.sqlite",
             [[str(bin_ / "ironic-dbsync"), "--config-file", str(s.ironic_conf), "create_schema"]], {}),
            ("glance", s.root / "glance.sqlite",
             [[str(bin_ / "glance-manage"), "--config-file",
               str(s.glance_conf_dir / "glance-api.conf"), "db_sync"]], {}),
        ]
        if s.auth == "keystone":
            # keystone-manage bootstrap reads the admin's password from the environment, not argv.
            steps.append(("keystone", s.root / "keystone.sqlite", keystone.setup_commands(s),
                          {"OS_BOOTSTRAP_PASSWORD": self.cloud_password()}))
        for name, db, commands, extra_env in steps:
            env = self._service_env(extra_env)
            marker = db.with_name(db.name + ".synced")
            if marker.exists() and db.exists():
                continue
            say(f"creating the {name} database")
            if name == "keystone":
                # A new database has no catalog yet: `up` registers the services again.
                keystone.registered_marker(s).unlink(missing_ok=True)
            log = s.log_dir / f"{name}-dbsync.log"
            with open(log, "w") as out:
                try:
                    rc = 0
                    for argv in commands:
                        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, cwd=s.root,
                                            timeout=self.timeouts.lab_service).returncode
                        if rc != 0:
                            break
                except subprocess.TimeoutExpired:
                    rc = None
            if rc != 0:
                what = "timed out" if rc is None else f"failed (exit {rc})"
                raise LabError(f"{name} database setup {what}; log: {log}\n"
                               f"{procs.log_tail(s.log_dir, f'{name}-dbsync')}")
            marker.write_text("")

    def _service_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in _DROPPED_ENV and not k.startswith(_DROPPED_ENV_PREFIXES)}
        env["PATH"] = f"{self.settings.venv / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        env.update(extra or {})
        return env

    def _ports(self, name: str) -> tuple[tuple[str, int], ...]:
        s = self.settings
        if name in ("ironic", "ironic-api"):
            return (("tcp", s.ironic_port),)
        if name == "mariadb":
            return (("tcp", s.mariadb_port),)
        if name.startswith(CONDUCTOR_SERVICE + "-"):
            # On an address of its own, not 127.0.0.1: _check_ports_free checks it.
            return ()
        if name == "keystone":
            return (("tcp", s.keystone_port),)
        if name == "glance":
            return (("tcp", s.glance_port),)
        if name == "http":
            return (("tcp", s.http_port),)
        if name == "reconciler":
            return ()
        return tuple(("udp", p) for p in s.bmc_ports)

    def _spec(self, name: str) -> procs.ServiceSpec:
        s = self.settings
        py = str(s.venv / "bin" / "python")
        extra: dict[str, str] = {}
        watched: list[Path] = []
        if name in ("ironic", "ironic-api"):
            argv = [str(s.venv / "bin" / name), "--config-file", str(s.ironic_conf)]
            watched = [s.ironic_conf, s.etc_dir / "ironic-policy.yaml"]
        elif name.startswith(CONDUCTOR_SERVICE + "-"):
            conf = s.conductor_conf(conductor_index(name))
            argv = [str(s.venv / "bin" / CONDUCTOR_SERVICE), "--config-file", str(s.ironic_conf),
                    "--config-file", str(conf)]
            watched = [s.ironic_conf, conf, s.etc_dir / "ironic-policy.yaml"]
        elif name == "mariadb":
            # Its own pid file beside procs' mariadb.pid, which is the lab's record.
            argv = mariadb.server_argv(datadir=s.mariadb_datadir, socket_path=s.mariadb_socket,
                                       pid_file=s.run_dir / "mariadbd.pid", port=s.mariadb_port)
        elif name == "keystone":
            argv = keystone.server_argv(s)
            extra = {"OS_KEYSTONE_CONFIG_FILES": str(s.keystone_conf)}
            watched = [s.keystone_conf, Path(keystone.__file__)]
        elif name == "glance":
            argv = [str(s.venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{s.glance_port}",
                    "--workers", "1", "--threads", "4", "--graceful-timeout", "5",
                    # No keep-alive: the conductor's and k1prov's pooled connections would
                    # race gunicorn closing them after 2 idle seconds.
                    "--keep-alive", "0",
                    # gunicorn 27's control socket defaults to one path in $HOME that
                    # every gunicorn of the user would share.
                    "--no-control-socket", "glance.wsgi.api:application"]
            extra = {"OS_GLANCE_CONFIG_DIR": str(s.glance_conf_dir)}
            watched = sorted(s.glance_conf_dir.iterdir())
        elif name == "http":
            # -I: isolated, so nothing from the environment or the cwd is imported.
            argv = [py, "-I", "-m", "http.server", "--bind", s.gateway,
                    "--directory", str(s.http_dir), str(s.http_port)]
        elif name == "reconciler":
            # k1prov's own python (it imports k1prov), not the lab venv's.
            argv = [sys.executable, "-m", RECONCILER_MODULE, "--root", str(s.root),
                    "--bmc-state-dir", str(s.bmc_state_dir), "--bmc-base-port", str(s.bmc_base_port),
                    "--count", str(s.nodes), "--venv", str(s.venv), "--tftp-root", str(s.tftp_root),
                    "--bridge", s.bridge, "--cidr", s.cidr, "--disk-gb", str(s.disk_gb),
                    "--bmc-username", s.bmc_username, "--bmc-password-file", str(s.bmc_password_file),
                    "--host-init", s.host_init]
            watched = [Path(__file__).with_name(n) for n in ("reconciler.py", "machine.py", "pxe.py",
                                                              "partitions.py", "hosts.py", "disk.py",
                                                              "netns.py")]
        else:
            # -I also keeps k1prov/lab (the script's directory) off sys.path, where its
            # modules would shadow the standard library's.
            argv = [py, "-I", str(BMCSIM_SCRIPT), "--state-dir", str(s.bmc_state_dir),
                    "--base-port", str(s.bmc_base_port), "--count", str(s.nodes),
                    "--username", s.bmc_username, "--password-file", str(s.bmc_password_file)]
            for flaky in s.flaky_bmcs:
                argv += ["--flaky", flaky]
            for port in s.dead_bmcs:
                argv += ["--dead", str(port)]
            for port, address in zip(range(s.bmc_base_port, s.bmc_base_port + s.nodes),
                                     self._bmc_lan_addresses()):
                argv += ["--lan-address", f"{port}={address}"]
            watched = [BMCSIM_SCRIPT]
        h = hashlib.sha256("\0".join(argv).encode())
        h.update(repr(sorted(extra.items())).encode())
        for path in watched:
            h.update(path.read_bytes())
        if name == "bmcsim":
            # A regenerated password file must reach the simulator; its identity (not its
            # content, which is a secret) goes into the fingerprint.
            st = s.bmc_password_file.stat()
            h.update(f"{st.st_ino}:{st.st_mtime_ns}".encode())
        return procs.ServiceSpec(name=name, argv=tuple(argv),
                                 env=tuple(sorted(self._service_env(extra).items())),
                                 cwd=s.root, ports=self._ports(name), fingerprint=h.hexdigest())

    def _check_ports_free(self, specs: list[procs.ServiceSpec], *, just_stopped: set[str]) -> None:
        for spec in specs:
            if spec.name.startswith(CONDUCTOR_SERVICE + "-"):
                address = self.settings.conductor_host(conductor_index(spec.name))
                if not _tcp_free(address, JSON_RPC_PORT):
                    raise LabError(f"tcp {address}:{JSON_RPC_PORT} (for the lab's {spec.name}) is in use "
                                   "by another program; stop it or give the lab another Ironic port")
            # A service this call has just stopped may hold its ports a moment longer.
            wait = procs.PORT_RELEASE_WAIT if spec.name in just_stopped else 0.0
            for proto, port in procs.wait_ports_free(spec.ports, timeout=wait):
                holders = procs.port_holders(proto, port)
                by = ", ".join(holders) if holders else "another program"
                raise LabError(f"{proto} port {port} (for the lab's {spec.name}) is in use "
                               f"by {by}; stop it or give the lab other ports")

    # ---- answers ----------------------------------------------------------------------

    def _answers(self, name: str, *, timeout: float) -> bool:
        s = self.settings
        if name in ("ironic", "ironic-api"):
            return checks.http_ok(s.ironic_url + "/", timeout=timeout)
        if name == "mariadb":
            return mariadb.answers(s.mariadb_socket, timeout=timeout)
        if name.startswith(CONDUCTOR_SERVICE + "-"):
            # Registered and beating in Ironic's database: its JSON-RPC port opens before it
            # registers, and only a registered conductor is in the API's hash ring.
            age = mariadb.conductor_heartbeat_age(s.mariadb_socket, s.conductor_host(conductor_index(name)),
                                                  timeout=timeout)
            return age is not None and age < s.conductor_heartbeat_timeout
        if name == "keystone":
            return checks.http_ok(s.keystone_url + "/v3", timeout=timeout)
        if name == "glance":
            # Outside the API's pipeline: answers with or without Keystone.
            return checks.http_ok(s.glance_url + "/healthcheck", timeout=timeout)
        if name == "http":
            return checks.http_ok(s.http_url + "/", timeout=timeout)
        if name == "reconciler":
            from k1prov.lab.reconciler import HEARTBEAT_MAX_AGE, heartbeat_age

            age = heartbeat_age(s.root)
            return age is not None and age < HEARTBEAT_MAX_AGE
        return checks.ipmi_power_status(s.bmc_base_port, username=s.bmc_username,
                                        password=self.bmc_password(), timeout=timeout) is not None

    def _wait_answers(self, name: str, rec: procs.Running, *, fresh: bool) -> None:
        """Wait until the service answers; a service that exits meanwhile fails at once."""
        s = self.settings
        deadline = time.monotonic() + (self.timeouts.lab_service if fresh else CHECK_TIMEOUT)
        while True:
            remaining = deadline - time.monotonic()
            if self._answers(name, timeout=max(0.5, min(CHECK_TIMEOUT, remaining))):
                return
            if not procs.process_alive(rec.pid) and not procs.group_members(rec.pid):
                raise LabError(f"{name} exited while starting; log: {s.log_dir / (name + '.log')}\n"
                               f"{procs.log_tail(s.log_dir, name)}")
            if time.monotonic() >= deadline:
                how = "after starting" if fresh else "although it is running"
                raise LabError(f"{name} (pid {rec.pid}) does not answer {how} "
                               f"(lab_service timeout); log: {s.log_dir / (name + '.log')}\n"
                               f"{procs.log_tail(s.log_dir, name)}")
            time.sleep(START_POLL)

    def _service_status(self, name: str) -> ServiceStatus:
        s = self.settings
        rec = procs.read_running(s.run_dir, name)
        if name == "bmcsim":
            last = s.bmc_base_port + s.nodes - 1
            url = f"ipmi://127.0.0.1:{s.bmc_base_port}"
            detail = f"{s.nodes} BMCs on udp 127.0.0.1:{s.bmc_base_port}-{last}"
        elif name == "reconciler":
            url, detail = "", (f"the {s.nodes} machines (agent or disk boot); "
                               f"log {s.log_dir / 'reconciler.log'}")
        elif name == "mariadb":
            url, detail = f"mysql://127.0.0.1:{s.mariadb_port}", f"Ironic's database; datadir {s.mariadb_datadir}"
        elif name.startswith(CONDUCTOR_SERVICE + "-"):
            i = conductor_index(name)
            url = f"http://{s.conductor_host(i)}:{JSON_RPC_PORT}"
            detail = f"JSON-RPC; conductor group {s.conductor_group(i)!r}"
        else:
            url = {"ironic": s.ironic_url, "ironic-api": s.ironic_url, "glance": s.glance_url,
                   "http": s.http_url, "keystone": s.keystone_url}[name]
            detail = ""
        answers = rec is not None and self._answers(name, timeout=CHECK_TIMEOUT)
        return ServiceStatus(name=name, url=url, pid=rec.pid if rec else None,
                             running=rec is not None, answers=answers,
                             detail=detail if rec else "not running",
                             rss_kib=procs.group_rss_kib(rec.pid) if rec else None)


def _tcp_free(address: str, port: int) -> bool:
    """True if a TCP socket can bind address:port (a listener there or on the wildcard
    address refuses it; TIME_WAIT leftovers do not)."""
    import errno
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise LabError(f"cannot test tcp {address}:{port}: {exc.strerror}") from None
    return True


def conductor_services(count: int) -> list[str]:
    """The lab service names of `count` conductors."""
    return [f"{CONDUCTOR_SERVICE}-{i}" for i in range(1, count + 1)]


def conductor_index(service: str) -> int:
    """1 for "ironic-conductor-1"."""
    return int(service.rpartition("-")[2])


def _read_password(path: Path, what: str, makes_it: str) -> str:
    """One of the lab's password files (written by `lab up`), without its newline."""
    try:
        return path.read_text().rstrip("\n")
    except OSError as exc:
        raise LabError(f"cannot read the lab's {what} password file {path}: {exc.strerror} "
                       f"(run `{makes_it}` first)") from None
