"""Where k1prov keeps its things on a host, in one place that the code and the role templates
both read (the templates as `layout`: templates/common/base.sh.j2, status.sh.j2).

The role scripts take each directory from the environment first (K1PROV_STATE_DIR, ...), so
tests can point them elsewhere; these are the defaults they fall back to.

    HOST.role_hash("zookeeper")     # /var/lib/k1prov/roles/zookeeper.sha256
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostLayout:
    """k1prov's paths and names on a host."""

    # K1PROV_STATE_DIR: each role's recorded script hash (roles/), pid files (run/), keys.
    state_dir: str = "/var/lib/k1prov"
    # K1PROV_LIB_DIR: the service launchers (<service>-run).
    lib_dir: str = "/usr/local/lib/k1prov"
    # K1PROV_LOG_DIR: the supervised services' logs (<service>.log).
    log_dir: str = "/var/log/k1prov"
    # K1PROV_HOSTS_FILE: where the scripts write the cluster's names.
    hosts_file: str = "/etc/hosts"
    # K1PROV_OS_RELEASE: what the scripts read to tell the distribution.
    os_release: str = "/etc/os-release"
    # systemd units of the services: <unit_prefix><service>.service.
    unit_prefix: str = "k1prov-"

    @property
    def run_dir(self) -> str:
        return f"{self.state_dir}/run"

    @property
    def roles_dir(self) -> str:
        return f"{self.state_dir}/roles"

    def role_hash(self, role: str) -> str:
        """The file a role's script writes its hash to when it succeeds."""
        return f"{self.roles_dir}/{role}.sha256"

    def launcher(self, service: str) -> str:
        return f"{self.lib_dir}/{service}-run"

    def service_log(self, service: str) -> str:
        return f"{self.log_dir}/{service}.log"


HOST = HostLayout()
