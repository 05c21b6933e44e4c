"""Role settings: the one table of what `roles:` may hold, its defaults and its checks.

Both readers use this module: the inventory loader (k1prov.inventory.cross_checks) checks a
file at load time and places each problem at its line, and the renderer resolves the
same settings again from `Inventory.roles` (so an Inventory built in Python gets the
same checks). A problem is reported through a `fail(key, reason)` callback: the loader's
adds FILE:LINE, the renderer's names the file and the field `roles.<section>.<key>`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from k1prov.errors import InventoryError
from k1prov.inventory import values
from k1prov.inventory.model import Inventory
from k1prov.roles import fit, mesos_flags

# AVENTER UG keeps building Apache Mesos (the Apache project is in the Attic and the
# Mesosphere repositories are gone). Their repository layout: Debian/<codename>,
# Ubuntu/<codename>/<codename>, AlmaLinux/<releasever>/<basearch> (used for RHEL clones).
AVENTER_DEBIAN = "https://rpm.aventer.biz/Debian"
AVENTER_UBUNTU = "https://rpm.aventer.biz/Ubuntu"
AVENTER_RPM = "https://rpm.aventer.biz/AlmaLinux/$releasever/$basearch/"
AVENTER_KEY = "https://www.aventer.biz/assets/support_aventer.asc"

APACHE_ARCHIVE = "https://archive.apache.org/dist"

COMMON_DEFAULTS: dict[str, Any] = {
    "java_install": True,            # install a Java runtime when `java` is not on PATH
    "java_package_deb": "default-jre-headless",  # the Java package on Debian/Ubuntu
    "java_package_rpm": "java-17-openjdk-headless",  # the Java package on RHEL/Rocky/AlmaLinux
    "clock_check": True,             # refuse an unset clock, warn when no NTP daemon runs
    "needs": {},                     # per role, over k1prov.roles.fit.ROLE_NEEDS: memory_mb, local_gb, cpus
}

ZOOKEEPER_DEFAULTS: dict[str, Any] = {
    "source": "distro",              # distro | tarball | mirror | preinstalled
    "version": "3.8.4",              # tarball/mirror release; distro and preinstalled take what is there
    "url": "",                       # tarball URL; default: the Apache archive
    "sha512": "",                    # required for tarball and mirror
    "mirror": "",                    # base URL laid out like the Apache archive
    "install_dir": "/opt/zookeeper",  # where tarball/mirror unpack the release
    "server_script": "",             # default: from source (distro path or install_dir)
    "conf_dir": "/etc/zookeeper/conf",  # zoo.cfg goes here
    "data_dir": "/var/lib/zookeeper",  # snapshots and myid
    "data_log_dir": "/var/lib/zookeeper/txlog",  # transaction log
    "log_dir": "/var/log/zookeeper",  # ZOO_LOG_DIR
    "user": "zookeeper",             # runs the server; created as a system user
    "client_port": 2181,             # clientPort
    "peer_port": 2888,               # server.N=host:PEER:election
    "election_port": 3888,           # server.N=host:peer:ELECTION
    "tick_time": 2000,               # tickTime, milliseconds
    "init_limit": 10,                # initLimit, ticks
    "sync_limit": 5,                 # syncLimit, ticks
    "heap_mb": 0,                    # 0: ZooKeeper's default heap
}

MESOS_DEFAULTS: dict[str, Any] = {
    "source": "aventer",             # aventer | mirror | distro | tarball | preinstalled
    "version": "",                   # when set, the installed binary must report this version
    "url": "",                       # tarball: URL of an operator's own build (unpacks to sbin/ lib/ libexec/ share/)
    "sha512": "",                    # tarball: the archive's sha512 (this or sha512_file)
    "sha512_file": "",               # tarball: a SHA512SUMS file here, read at render (the url's file name)
    "install_dir": "/opt/mesos",     # tarball: where it is unpacked
    "package": "",                   # default: aventer-mesos (deb) / mesos (rpm)
    "repo_url": "",                  # mirror: the repository base URL (required)
    "repo_key_url": "",              # default: AVENTER's key for aventer, none for mirror
    "mirror": "",                    # alias of repo_url for source=mirror
    "zk_path": "/mesos",             # znode of the masters: zk://.../<zk_path>
    "cluster_name": "",              # --cluster; default: the inventory's cluster name
    "master_work_dir": "/var/lib/mesos/master",  # --work_dir of the masters (replicated log)
    "agent_work_dir": "/var/lib/mesos/agent",  # --work_dir of the agents
    "log_dir": "/var/log/mesos",     # --log_dir
    "master_port": 5050,             # --port of the masters
    "agent_port": 5051,              # --port of the agents
    "master_binary": "mesos-master",  # name or path of the master binary
    "agent_binary": "mesos-agent",   # name or path of the agent binary
    "roles": [],                     # --roles of the masters: a list of role names
    "weights": {},                   # --weights: role -> positive number
    "containerizers": "mesos",       # mesos, docker or mesos,docker
    "isolation": "",                 # --isolation of the agents; empty: Mesos' default
    "resources": "",                 # the agents' --resources; auto: from Ironic's properties less the reserves
    "reserved_memory_mb": 1024,      # kept for the OS when mem is derived from memory_mb
    "reserved_cpus": 1,              # auto: CPUs kept for the OS and the agent (at least 1 is offered)
    "reserved_disk_mb": 1024,        # auto: disk kept for the OS, the image and the agent's logs
    "reserved_percent": 10,          # auto: memory and disk keep at least this share of the total
    "attributes": {},                # merged under node.properties["mesos_attributes"]
    "master_flags": {},              # extra master flags: name -> value (--name=value)
    "agent_flags": {},               # extra agent flags: name -> value (--name=value)
}

SPARK_DEFAULTS: dict[str, Any] = {
    "source": "tarball",             # tarball | mirror | preinstalled
    "version": "3.5.9",              # tarball/mirror release; Spark 4 cannot run on Mesos
    "package": "bin-hadoop3",        # release suffix: spark-<version>-<package>.tgz
    "url": "",                       # tarball URL; default: the Apache archive
    "sha512": "",                    # required for tarball and mirror
    "mirror": "",                    # base URL laid out like the Apache archive
    "spark_home": "/opt/spark",      # where the release is (unpacked or preinstalled)
    "conf_dir": "",                  # default: <spark_home>/conf
    "pid_dir": "/var/run/spark",     # SPARK_PID_DIR
    "log_dir": "/var/log/spark",     # SPARK_LOG_DIR
    "work_dir": "/var/lib/spark/work",  # --work-dir of the workers
    "user": "spark",                 # runs the daemons; created as a system user
    "manager": "",                   # standalone | mesos; default: mesos when there are mesos masters
    "mode": "coarse",                # on Mesos: coarse | fine
    "executor_uri": "",              # on Mesos: spark.executor.uri
    "mesos_native_library": "",      # on Mesos: MESOS_NATIVE_JAVA_LIBRARY; default: from the Mesos source
    "python": "",                    # PySpark's Python on every host (spark.pyspark.python, executors' PYSPARK_PYTHON)
    "java_home": "",                 # JAVA_HOME in spark-env.sh; empty: from PATH
    "master_port": 7077,             # standalone master --port
    "master_webui_port": 8080,       # standalone master --webui-port
    "worker_webui_port": 8081,       # worker --webui-port
    "dispatcher_port": 7077,         # on Mesos: MesosClusterDispatcher --port
    "dispatcher_webui_port": 8081,   # on Mesos: MesosClusterDispatcher --webui-port
    "worker_cores": 0,               # 0: all cores
    "worker_memory": "",             # e.g. "8g"; empty: Spark's default
    "defaults": {},                  # extra spark-defaults.conf entries
}

# The sections of `roles:` that hold settings, with their defaults.
DEFAULTS: dict[str, dict[str, Any]] = {
    "common": COMMON_DEFAULTS,
    "zookeeper": ZOOKEEPER_DEFAULTS,
    "mesos": MESOS_DEFAULTS,
    "spark": SPARK_DEFAULTS,
}
# Every key `roles:` may hold: the sections, and the template override directory.
TEMPLATES_DIR = "templates_dir"
ROLE_KEYS: tuple[str, ...] = (TEMPLATES_DIR, *DEFAULTS)

SOURCES = {
    "zookeeper": ("distro", "tarball", "mirror", "preinstalled"),
    "mesos": ("aventer", "mirror", "distro", "tarball", "preinstalled"),
    "spark": ("tarball", "mirror", "preinstalled"),
}
SPARK_MANAGERS = ("standalone", "mesos")
SPARK_MODES = ("coarse", "fine")
MESOS_CONTAINERIZERS = ("mesos", "docker")

# Integer settings with a lower bound other than "a port" (ports: 1-65535).
_MINIMUM = {"tick_time": 1, "init_limit": 1, "sync_limit": 1, "heap_mb": 0,
            "reserved_memory_mb": 0, "reserved_cpus": 0, "reserved_disk_mb": 0,
            "reserved_percent": 0, "worker_cores": 0}

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_FLAG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SPARK_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{128}$")

# fail(key, reason): key is the path under the section ("sha512", "agent_flags.x").
Fail = Callable[[str, str], NoReturn]


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a whole number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _check_text(value: Any, key: str, fail: Fail) -> None:
    """Values land in config files read line by line: a newline would add a line."""
    if isinstance(value, str) and ("\n" in value or "\r" in value or "\0" in value):
        fail(key, "must not contain newlines or NUL")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_text(str(k), key, fail)
            _check_text(v, f"{key}.{k}", fail)
    if isinstance(value, list):
        for v in value:
            _check_text(v, key, fail)


def check_value(section: str, key: str, value: Any, fail: Fail) -> Any:
    """One setting on its own: known key, right type, allowed value. Returns it."""
    defaults = DEFAULTS[section]
    if key not in defaults:
        fail(key, f"unknown setting (known: {', '.join(sorted(defaults))})")
    want = type(defaults[key])
    # bool is an int subclass: keep true/false out of port numbers and back.
    if want is int and (isinstance(value, bool) or not isinstance(value, int)):
        fail(key, f"must be a whole number, got {_kind(value)}")
    if want is not int and not isinstance(value, want):
        fail(key, f"must be {_kind(defaults[key])}, got {_kind(value)}")
    _check_text(value, key, fail)
    if key.endswith("_port") and not 1 <= value <= 65535:
        fail(key, f"{value} is not a port (1-65535)")
    if key in _MINIMUM and value < _MINIMUM[key]:
        fail(key, f"{value} is below {_MINIMUM[key]}")
    if key == "version" and value:
        try:
            values.version(value)
        except ValueError as exc:
            fail(key, str(exc))
    if key == "source" and value not in SOURCES[section]:
        fail(key, f"unknown source {value!r} (one of: {', '.join(SOURCES[section])})")
    if key == "user" and not _USER_RE.match(value):
        # Goes into a systemd unit's User= line and runuser -u: keep it a plain name.
        fail(key, f"not a valid user name: {value!r}")
    if key == "sha512" and value and not _HEX_RE.match(value):
        fail(key, "must be the release's sha512 (128 hex digits)")
    if section == "spark" and key == "manager" and value and value not in SPARK_MANAGERS:
        fail(key, "must be standalone or mesos")
    if section == "spark" and key == "mode" and value not in SPARK_MODES:
        fail(key, "must be coarse or fine")
    if section == "spark" and key == "defaults":
        for name in value:
            if not _SPARK_KEY_RE.match(str(name)):
                fail(f"defaults.{name}", "not a Spark property name")
    if section == "mesos":
        _check_mesos_value(key, value, fail)
    return value


def _check_mesos_value(key: str, value: Any, fail: Fail) -> None:
    if key == "reserved_percent" and value > 90:
        fail(key, f"{value} is above 90 (a percentage of memory and disk kept from the tasks)")
    if key == "resources" and value.strip().lower() == "auto" and value != "auto":
        fail(key, f"write `auto` on its own, in lower case (got {value!r})")
    if key == "resources" and value and value != "auto" and "auto" in value.lower().split(";"):
        fail(key, "`auto` stands alone: it replaces the whole resource string")
    if key in ("master_flags", "agent_flags"):
        for flag in value:
            if not _FLAG_RE.match(str(flag)):
                fail(f"{key}.{flag}", "not a Mesos flag name")
    if key == "roles":
        for role in value:
            if not isinstance(role, str) or not role or "," in role:
                fail(key, f"not a role name: {role!r}")
    if key == "weights":
        for role, weight in value.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                fail(f"weights.{role}", "must be a positive number")
    if key == "containerizers":
        for part in value.split(","):
            if part.strip() not in MESOS_CONTAINERIZERS:
                fail(key, f"{part.strip()!r} is not a Mesos containerizer "
                          f"({', '.join(MESOS_CONTAINERIZERS)})")


def _check_mesos_flags(cfg: Mapping[str, Any], fail: Fail) -> None:
    """Every extra flag is one the daemon of the Mesos version installed knows: a typo
    would keep the master or agent from starting on the host (k1prov.roles.mesos_flags)."""
    known = mesos_flags.flags_for(cfg["version"])
    for key, daemon in (("master_flags", "master"), ("agent_flags", "agent")):
        names = known.of(daemon)
        for flag in cfg[key]:
            if flag not in names:
                fail(f"{key}.{flag}", f"not a flag of mesos-{daemon} {known.version}"
                                      f"{values.did_you_mean(str(flag), names)}")


def sha512_from_file(path: str, url: str, fail: Callable[[str], NoReturn]) -> str:
    """The sha512 that a checksum file on this machine gives the archive of `url`: a
    SHA512SUMS file ("HEX  NAME" lines; the line of the URL's file name), or one bare
    digest. Read when rendering, so that the rendered script carries the digest: a new
    build changes the script, and configure installs it."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    where = Path(path).expanduser()
    try:
        text = where.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {where}: {getattr(exc, 'strerror', None) or exc}")
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) == 1 and len(lines[0]) == 1 and _HEX_RE.match(lines[0][0]):
        return lines[0][0].lower()
    for parts in lines:
        if len(parts) == 2 and _HEX_RE.match(parts[0]) and parts[1].lstrip("*") == name:
            return parts[0].lower()
    fail(f"{where} lists no sha512 for {name or url!r} (lines \"HEX  NAME\", or one bare digest)")


def _tarball(cfg: dict[str, Any], archive_path: str, fail: Fail, install: bool) -> str:
    """URL of the release tarball for tarball/mirror sources ('' otherwise)."""
    if cfg["source"] not in ("tarball", "mirror") or not install:
        return ""
    if not cfg["sha512"]:
        fail("sha512", f"source {cfg['source']} needs the release's sha512 (128 hex digits)")
    if cfg["source"] == "mirror":
        if not cfg["mirror"]:
            fail("mirror", "source mirror needs the mirror's base URL")
        return cfg["mirror"].rstrip("/") + "/" + archive_path
    return cfg["url"] or f"{APACHE_ARCHIVE}/{archive_path}"


def resolve(section: str, given: Mapping[str, Any], *, cluster: str, mesos_masters: bool,
            fail: Fail, install: bool = True) -> dict[str, Any]:
    """The section's settings: defaults, the given values over them (each checked),
    then what follows from the rest (URLs, default paths, the Spark manager) and the
    checks between settings. Resolving a result again gives the same result.

    `install` False (the inventory loader): each given value is still checked, but not
    what only installing needs (the default tarball source wants a sha512, a mirror
    its URL): an inventory is valid for enroll and deploy without them."""
    cfg = dict(DEFAULTS[section])
    for key, value in given.items():
        cfg[key] = check_value(section, str(key), value, fail)
    if section == "common":
        cfg["needs"] = fit.resolve_needs(cfg["needs"], lambda reason: fail("needs", reason))
    elif section == "zookeeper":
        version = cfg["version"]
        cfg["tarball_url"] = _tarball(
            cfg, f"zookeeper/zookeeper-{version}/apache-zookeeper-{version}-bin.tar.gz", fail, install)
        if not cfg["server_script"]:
            cfg["server_script"] = ("/usr/share/zookeeper/bin/zkServer.sh" if cfg["source"] == "distro"
                                    else cfg["install_dir"].rstrip("/") + "/bin/zkServer.sh")
    elif section == "mesos":
        _check_mesos_flags(cfg, fail)
        cfg["cluster_name"] = cfg["cluster_name"] or cluster
        if cfg["source"] == "mirror":
            cfg["repo_url"] = cfg["repo_url"] or cfg["mirror"]
            if not cfg["repo_url"] and install:
                fail("repo_url", "source mirror needs the mirror repository's URL")
        elif cfg["source"] == "aventer" and not cfg["repo_key_url"]:
            # A site that trusts AVENTER's repository otherwise uses source mirror with its URL.
            cfg["repo_key_url"] = AVENTER_KEY
        cfg["tarball_url"] = ""
        prefix = cfg["install_dir"].rstrip("/")
        if cfg["source"] == "tarball":
            if install and not cfg["url"]:
                fail("url", "source tarball needs the URL of the Mesos build's archive")
            if install and cfg["sha512_file"]:
                listed = sha512_from_file(cfg["sha512_file"], cfg["url"], lambda reason: fail("sha512_file", reason))
                if cfg["sha512"] and cfg["sha512"].lower() != listed:
                    fail("sha512", f"differs from the sha512 {cfg['sha512_file']} lists")
                cfg["sha512"] = listed
            if install and not cfg["sha512"]:
                fail("sha512", "source tarball needs the archive's sha512 (128 hex digits) "
                               "or a sha512_file that lists it")
            cfg["tarball_url"] = cfg["url"]
            # A build unpacked away from its build prefix: binaries by path, and the
            # helpers and web UI it would look for under the compiled-in prefix.
            if cfg["master_binary"] == MESOS_DEFAULTS["master_binary"]:
                cfg["master_binary"] = f"{prefix}/sbin/mesos-master"
            if cfg["agent_binary"] == MESOS_DEFAULTS["agent_binary"]:
                cfg["agent_binary"] = f"{prefix}/sbin/mesos-agent"
            cfg["master_flags"] = {"webui_dir": f"{prefix}/share/mesos/webui", **cfg["master_flags"]}
            cfg["agent_flags"] = {"launcher_dir": f"{prefix}/libexec/mesos", **cfg["agent_flags"]}
            cfg["native_library"] = f"{prefix}/lib/libmesos.so"
        else:
            cfg["native_library"] = "/usr/lib/libmesos.so"
    elif section == "spark":
        version = cfg["version"]
        cfg["tarball_url"] = _tarball(
            cfg, f"spark/spark-{version}/spark-{version}-{cfg['package']}.tgz", fail, install)
        cfg["conf_dir"] = cfg["conf_dir"] or cfg["spark_home"].rstrip("/") + "/conf"
        cfg["manager"] = cfg["manager"] or ("mesos" if mesos_masters else "standalone")
    return cfg


def stored(section: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
    """What the loader keeps in Inventory.roles: the settings only (no derived URLs)."""
    return {key: resolved[key] for key in DEFAULTS[section]}


# ---- the renderer's view: resolved from an Inventory ---------------------------------

def _inventory_fail(inv: Inventory, section: str) -> Fail:
    def fail(key: str, reason: str) -> NoReturn:
        raise inv.error(f"roles.{section}.{key}", reason)
    return fail


def settings_of(inv: Inventory, section: str) -> dict[str, Any]:
    given = inv.roles.get(section) or {}
    if not isinstance(given, Mapping):
        raise inv.error(f"roles.{section}", "must be a mapping")
    return resolve(section, given, cluster=inv.cluster, mesos_masters=bool(inv.with_role("mesos-master")),
                   fail=_inventory_fail(inv, section))


def common_settings(inv: Inventory) -> dict[str, Any]:
    return settings_of(inv, "common")


def zookeeper_settings(inv: Inventory) -> dict[str, Any]:
    return settings_of(inv, "zookeeper")


def mesos_settings(inv: Inventory) -> dict[str, Any]:
    return settings_of(inv, "mesos")


def spark_settings(inv: Inventory) -> dict[str, Any]:
    spark = settings_of(inv, "spark")
    if spark["manager"] == "mesos" and not spark["mesos_native_library"]:
        # Where the inventory's Mesos source puts libmesos (with its Java bindings).
        spark["mesos_native_library"] = mesos_settings(inv)["native_library"]
    return spark
