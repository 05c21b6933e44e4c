"""Role scripts (ZooKeeper, Mesos, Spark): rendering per host, phases, health checks.

Pure: nothing here talks to a host. The orchestrator pushes `RenderedScript.text`
over SSH, reads the last line `K1PROV-RESULT changed=<0|1>`, and can skip a host
whose /var/lib/k1prov/roles/<role>.sha256 already equals `RenderedScript.sha256` and
whose `RenderedScript.service` runs (`render.status_functions`: templates/common/status.sh.j2).
"""
from k1prov.roles.derive import (agent_attributes, agent_resources, mesos_quorum, mesos_zk_url,
                                 spark_master_url, zk_connect, zookeeper_ids)
from k1prov.roles.health import (HealthResult, Runner, mesos_health, spark_workers_health,
                                 wait_until_healthy, zookeeper_health)
from k1prov.roles.plan import ROLE_PHASES, Phase, phases
from k1prov.roles.render import (RenderedFile, RenderedScript, render_all, render_host, shq,
                                 template_dirs, write_rendered)

__all__ = [
    "HealthResult", "Phase", "ROLE_PHASES", "RenderedFile", "RenderedScript", "Runner",
    "agent_attributes", "agent_resources", "mesos_health", "mesos_quorum", "mesos_zk_url",
    "phases", "render_all", "render_host", "shq", "spark_master_url", "spark_workers_health",
    "template_dirs", "wait_until_healthy", "write_rendered", "zk_connect", "zookeeper_ids",
    "zookeeper_health",
]
