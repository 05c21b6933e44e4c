"""Role settings: the inventory's `roles:` mappings merged over k1prov's defaults.

The inventory loader validates the shape of the file; this module owns what each
role setting means, its default, and the checks that the renderer relies on
(no newlines in values that end up in config files, known package sources).
"""
from __future__ import annotations

import re
from typing import Any

from k1prov.errors import InventoryError
from k1prov.inventory.model import Inventory

# AVENTER UG keeps building Apache Mesos (the Apache project is in the Attic and the
# Mesosphere repositories are gone). Their repository layout: Debian/<codename>,
# Ubuntu/<codename>/<codename>, AlmaLinux/<releasever>/<basearch> (used for RHEL clones).
AVENTER_DEBIAN = "https://rpm.aventer.biz/Debian"
AVENTER_UBUNTU = "https://rpm.aventer.biz/Ubuntu"
AVENTER_RPM = "https://rpm.aventer.biz/AlmaLinux/$releasever/$basearch/"
AVENTER_KEY = "https://www.aventer.biz/assets/support_aventer.asc"

APACHE_ARCHIVE = "https://archive.apache.org/dist"

COMMON_DEFAULTS: dict[str, Any] = {
    "java_install": True,
    "java_package_deb": "default-jre-headless",
    "java_package_rpm": "java-17-openjdk-headless",
    "clock_check": True,
}

ZOOKEEPER_DEFAULTS: dict[str, Any] = {
    "source": "distro",              # distro | tarball | mirror | preinstalled
    "version": "3.8.4",
    "url": "",                       # tarball URL; default: the Apache archive
    "sha512": "",                    # required for tarball and mirror
    "mirror": "",                    # base URL laid out like the Apache archive
    "install_dir": "/opt/zookeeper",
    "server_script": "",             # default: from source (distro path or install_dir)
    "conf_dir": "/etc/zookeeper/conf",
    "data_dir": "/var/lib/zookeeper",
    "data_log_dir": "/var/lib/zookeeper/txlog",
    "log_dir": "/var/log/zookeeper",
    "user": "zookeeper",
    "client_port": 2181,
    "peer_port": 2888,
    "election_port": 3888,
    "tick_time": 2000,
    "init_limit": 10,
    "sync_limit": 5,
    "heap_mb": 0,                    # 0: ZooKeeper's default heap
}

MESOS_DEFAULTS: dict[str, Any] = {
    "source": "aventer",             # aventer | mirror | distro | preinstalled
    "package": "",                   # default: aventer-mesos (deb) / mesos (rpm)
    "repo_url": "",                  # mirror: the repository base URL (required)
    "repo_key_url": "",              # default: AVENTER's key for aventer, none for mirror
    "mirror": "",                    # alias of repo_url for source=mirror
    "zk_path": "/mesos",
    "cluster": "",                   # default: the inventory's cluster name
    "master_work_dir": "/var/lib/mesos/master",
    "agent_work_dir": "/var/lib/mesos/agent",
    "log_dir": "/var/log/mesos",
    "master_port": 5050,
    "agent_port": 5051,
    "master_binary": "mesos-master",
    "agent_binary": "mesos-agent",
    "roles": [],
    "weights": {},
    "containerizers": "mesos",
    "isolation": "",
    "resources": "",                 # overrides the per-node resources derived from properties
    "reserved_memory_mb": 1024,      # kept for the OS when mem is derived from memory_mb
    "attributes": {},                # merged under node.properties["mesos_attributes"]
    "master_flags": {},
    "agent_flags": {},
}

SPARK_DEFAULTS: dict[str, Any] = {
    "source": "tarball",             # tarball | mirror | preinstalled
    "version": "3.5.9",
    "package": "bin-hadoop3",        # release suffix: spark-<version>-<package>.tgz
    "url": "",
    "sha512": "",
    "mirror": "",
    "spark_home": "/opt/spark",
    "conf_dir": "",                  # default: <spark_home>/conf
    "pid_dir": "/var/run/spark",
    "log_dir": "/var/log/spark",
    "work_dir": "/var/lib/spark/work",
    "user": "spark",
    "manager": "",                   # standalone | mesos; default: mesos when there are mesos masters
    "mesos_mode": "coarse",          # coarse | fine
    "executor_uri": "",
    "mesos_native_library": "/usr/lib/libmesos.so",
    "java_home": "",
    "master_port": 7077,
    "master_webui_port": 8080,
    "worker_webui_port": 8081,
    "dispatcher_port": 7077,
    "dispatcher_webui_port": 8081,
    "worker_cores": 0,               # 0: all cores
    "worker_memory": "",             # e.g. "8g"; empty: Spark's default
    "defaults": {},                  # extra spark-defaults.conf entries
}

SOURCES = {
    "zookeeper": ("distro", "tarball", "mirror", "preinstalled"),
    "mesos": ("aventer", "mirror", "distro", "preinstalled"),
    "spark": ("tarball", "mirror", "preinstalled"),
}

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_FLAG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SPARK_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{128}$")


def _err(component: str, key: str, reason: str, inv: Inventory) -> InventoryError:
    return InventoryError(reason, file=str(inv.path), field=f"roles.{component}.{key}")


def _check_text(value: Any, component: str, key: str, inv: Inventory) -> None:
    """Values land in config files read line by line: a newline would add a line."""
    if isinstance(value, str) and ("\n" in value or "\r" in value or "\0" in value):
        raise _err(component, key, "must not contain newlines or NUL", inv)
    if isinstance(value, dict):
        for k, v in value.items():
            _check_text(str(k), component, key, inv)
            _check_text(v, component, f"{key}.{k}", inv)
    if isinstance(value, list):
        for v in value:
            _check_text(v, component, key, inv)


def _merge(inv: Inventory, component: str, defaults: dict[str, Any]) -> dict[str, Any]:
    given = inv.roles.get(component) or {}
    if not isinstance(given, dict):
        raise InventoryError("must be a mapping", file=str(inv.path), field=f"roles.{component}")
    merged = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise _err(component, key, f"unknown setting (known: {known})", inv)
        want = type(defaults[key])
        # bool is an int subclass: keep true/false out of port numbers and back.
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise _err(component, key, f"must be an integer, not {value!r}", inv)
        if want is not int and not isinstance(value, want):
            raise _err(component, key, f"must be a {want.__name__}", inv)
        _check_text(value, component, key, inv)
        merged[key] = value
    return merged


def _check_source(cfg: dict[str, Any], component: str, inv: Inventory) -> None:
    if cfg["source"] not in SOURCES[component]:
        allowed = ", ".join(SOURCES[component])
        raise _err(component, "source", f"unknown source {cfg['source']!r} (one of: {allowed})", inv)


def _check_user(cfg: dict[str, Any], component: str, inv: Inventory) -> None:
    # Goes into a systemd unit's User= line and runuser -u: keep it a plain name.
    if not _USER_RE.match(cfg["user"]):
        raise _err(component, "user", f"not a valid user name: {cfg['user']!r}", inv)


def _tarball(cfg: dict[str, Any], component: str, inv: Inventory, archive_path: str) -> str:
    """URL of the release tarball for tarball/mirror sources ('' otherwise)."""
    if cfg["source"] not in ("tarball", "mirror"):
        return ""
    if not _HEX_RE.match(cfg["sha512"]):
        raise _err(component, "sha512", f"source {cfg['source']} needs the release's sha512 (128 hex digits)", inv)
    if cfg["source"] == "mirror":
        if not cfg["mirror"]:
            raise _err(component, "mirror", "source mirror needs the mirror's base URL", inv)
        return cfg["mirror"].rstrip("/") + "/" + archive_path
    return cfg["url"] or f"{APACHE_ARCHIVE}/{archive_path}"


def common_settings(inv: Inventory) -> dict[str, Any]:
    return _merge(inv, "common", COMMON_DEFAULTS)


def zookeeper_settings(inv: Inventory) -> dict[str, Any]:
    cfg = _merge(inv, "zookeeper", ZOOKEEPER_DEFAULTS)
    _check_source(cfg, "zookeeper", inv)
    _check_user(cfg, "zookeeper", inv)
    version = cfg["version"]
    cfg["tarball_url"] = _tarball(
        cfg, "zookeeper", inv, f"zookeeper/zookeeper-{version}/apache-zookeeper-{version}-bin.tar.gz")
    if not cfg["server_script"]:
        if cfg["source"] == "distro":
            cfg["server_script"] = "/usr/share/zookeeper/bin/zkServer.sh"
        else:
            cfg["server_script"] = cfg["install_dir"].rstrip("/") + "/bin/zkServer.sh"
    return cfg


def mesos_settings(inv: Inventory) -> dict[str, Any]:
    cfg = _merge(inv, "mesos", MESOS_DEFAULTS)
    _check_source(cfg, "mesos", inv)
    cfg["cluster"] = cfg["cluster"] or inv.cluster
    if cfg["source"] == "mirror":
        cfg["repo_url"] = cfg["repo_url"] or cfg["mirror"]
        if not cfg["repo_url"]:
            raise _err("mesos", "repo_url", "source mirror needs the mirror repository's URL", inv)
    elif cfg["source"] == "aventer" and "repo_key_url" not in (inv.roles.get("mesos") or {}):
        # An explicit empty repo_key_url means the site trusts the repository otherwise.
        cfg["repo_key_url"] = AVENTER_KEY
    for key in ("master_flags", "agent_flags"):
        for flag in cfg[key]:
            if not _FLAG_RE.match(str(flag)):
                raise _err("mesos", f"{key}.{flag}", "not a Mesos flag name", inv)
    for role in cfg["roles"]:
        if not isinstance(role, str) or not role or "," in role:
            raise _err("mesos", "roles", f"not a role name: {role!r}", inv)
    for role, weight in cfg["weights"].items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise _err("mesos", f"weights.{role}", "must be a positive number", inv)
    return cfg


def spark_settings(inv: Inventory) -> dict[str, Any]:
    cfg = _merge(inv, "spark", SPARK_DEFAULTS)
    _check_source(cfg, "spark", inv)
    _check_user(cfg, "spark", inv)
    version = cfg["version"]
    cfg["tarball_url"] = _tarball(
        cfg, "spark", inv, f"spark/spark-{version}/spark-{version}-{cfg['package']}.tgz")
    cfg["conf_dir"] = cfg["conf_dir"] or cfg["spark_home"].rstrip("/") + "/conf"
    if not cfg["manager"]:
        cfg["manager"] = "mesos" if inv.with_role("mesos-master") else "standalone"
    if cfg["manager"] not in ("standalone", "mesos"):
        raise _err("spark", "manager", "must be standalone or mesos", inv)
    if cfg["mesos_mode"] not in ("coarse", "fine"):
        raise _err("spark", "mesos_mode", "must be coarse or fine", inv)
    for key in cfg["defaults"]:
        if not _SPARK_KEY_RE.match(str(key)):
            raise _err("spark", f"defaults.{key}", "not a Spark property name", inv)
    return cfg
