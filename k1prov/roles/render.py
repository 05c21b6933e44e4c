"""Render the role scripts of each host from the Jinja templates.

Every value from the inventory reaches a shell script through the `shq` filter
(shlex.quote); config files that are not shell (zoo.cfg, spark-defaults.conf) are
rendered on their own and then embedded in the script as one quoted string, so
no inventory value is ever parsed by the remote shell.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import jinja2

from k1prov.errors import ConfigError
from k1prov.host_layout import HOST
from k1prov.inventory.model import Inventory, Node
from k1prov.roles import derive
from k1prov.roles.plan import ROLE_PHASES, phases, roles_in_order
from k1prov.roles.role_settings import (AVENTER_DEBIAN, AVENTER_RPM, AVENTER_UBUNTU, common_settings,
                                   mesos_settings, spark_settings, zookeeper_settings)

@dataclass(frozen=True)
class RenderedFile:
    """A config file a script embeds, with where the script puts it on the host."""

    path: str
    text: str
    mode: str = "0644"


@dataclass(frozen=True)
class RenderedScript:
    role: str
    phase: int
    filename: str
    text: str
    # Hash of the script rendered with an empty K1_SCRIPT_SHA256; the script records
    # it in HOST.role_hash(role) (/var/lib/k1prov/roles/<role>.sha256) when it succeeds.
    sha256: str
    files: tuple[RenderedFile, ...] = field(default=())
    # The service the script keeps running (k1_service NAME), "" for none (spark-client,
    # a Spark worker on Mesos): what `configure` checks on hosts whose hash matches.
    service: str = ""
    # Files the script writes once and the service cannot do without (ZooKeeper's myid):
    # one gone means the host lost the role's data (a wiped data directory, a replaced
    # disk), so configure runs the script again even though its hash matches.
    state_files: tuple[str, ...] = ()


def shq(value: Any) -> str:
    """Quote one value for bash. Booleans become true/false; None is a bug upstream."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return shlex.quote(str(value))
    if isinstance(value, str):
        return shlex.quote(value)
    raise TypeError(f"shq: cannot quote a {type(value).__name__} for the shell")


def template_dirs(inv: Inventory) -> list[Path]:
    """Template search path: the inventory's roles.templates_dir (per-file overrides),
    then $K1PROV_TEMPLATES, then the templates/ directory shipped with k1prov."""
    dirs: list[Path] = []
    override = inv.roles.get("templates_dir")
    if override:
        path = Path(os.path.expanduser(str(override)))
        if not path.is_absolute():
            path = inv.path.parent / path
        if not path.is_dir():
            raise inv.error("roles.templates_dir", f"{path} is not a directory")
        dirs.append(path)
    env = os.environ.get("K1PROV_TEMPLATES")
    if env:
        if not Path(env).is_dir():
            raise ConfigError(f"K1PROV_TEMPLATES={env} is not a directory")
        dirs.append(Path(env))
    for builtin in (Path(__file__).resolve().parents[2] / "templates",
                    Path(sys.prefix) / "share" / "k1prov" / "templates"):
        if (builtin / "common" / "base.sh.j2").is_file():
            dirs.append(builtin)
            break
    if not dirs:
        raise ConfigError("cannot find k1prov's templates; set K1PROV_TEMPLATES to the templates/ directory")
    return dirs


# How the role templates are parsed; part of the compiled-template cache's directory name.
_ENV_OPTIONS = {"autoescape": False, "keep_trailing_newline": True, "trim_blocks": True,
                "lstrip_blocks": True}


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs. Compiling the role templates is most of a
    render (about 0.15 s of every `cluster up`, `configure` or `--dry-run` on this 2-core
    machine); jinja finds an entry by the template's path and reuses it only while the
    source's checksum is the same. A cache that cannot be written is no cache."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _compiled_templates() -> jinja2.BytecodeCache | None:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = hashlib.sha256(json.dumps([jinja2.__version__, sys.version, _ENV_OPTIONS],
                                    sort_keys=True).encode()).hexdigest()[:12]
    directory = base / "k1prov" / f"templates-{tag}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _CompiledTemplates(str(directory))


def environment(inv: Inventory) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(inv)]),
        undefined=jinja2.StrictUndefined,
        bytecode_cache=_compiled_templates(),
        **_ENV_OPTIONS,
    )
    env.filters["shq"] = shq
    # k1prov's paths on the host, for every template (k1prov.host_layout).
    env.globals["layout"] = HOST
    return env


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateError as exc:
        lineno = getattr(exc, "lineno", None)
        where = f"{getattr(exc, 'filename', None) or name}:{lineno}: " if lineno else ""
        raise ConfigError(f"template {name}: {where}{exc}") from None


def _spark_context(inv: Inventory, node: Node, role: str) -> dict[str, Any]:
    spark = spark_settings(inv)
    master_url = derive.spark_master_url(inv)
    daemon: dict[str, Any] | None = None
    if role == "spark-master" and spark["manager"] == "standalone":
        daemon = {"service": "spark-master", "java_class": "org.apache.spark.deploy.master.Master",
                  "args": ["--host", node.address, "--port", spark["master_port"],
                           "--webui-port", spark["master_webui_port"]]}
    elif role == "spark-master":
        # On Mesos there is no Spark master: the dispatcher accepts cluster-mode submissions.
        daemon = {"service": "spark-dispatcher",
                  "java_class": "org.apache.spark.deploy.mesos.MesosClusterDispatcher",
                  "args": ["--host", node.address, "--port", spark["dispatcher_port"],
                           "--webui-port", spark["dispatcher_webui_port"], "--master", master_url]}
    elif role == "spark-worker" and spark["manager"] == "standalone":
        args: list[Any] = [master_url, "--host", node.address, "--webui-port", spark["worker_webui_port"],
                           "--work-dir", spark["work_dir"]]
        if spark["worker_cores"]:
            args += ["--cores", spark["worker_cores"]]
        if spark["worker_memory"]:
            args += ["--memory", spark["worker_memory"]]
        daemon = {"service": "spark-worker", "java_class": "org.apache.spark.deploy.worker.Worker",
                  "args": args}
    # What a user's own job needs when submitted on this host with nothing but the
    # master URL: the executors reach the driver at this host's inventory address (not
    # whatever its name resolves to), and run the Python the inventory names.
    defaults: list[tuple[str, str]] = [("spark.master", master_url), ("spark.driver.host", node.address)]
    if spark["python"]:
        defaults += [("spark.pyspark.python", spark["python"]),
                     ("spark.executorEnv.PYSPARK_PYTHON", spark["python"])]
    if spark["manager"] == "mesos":
        defaults.append(("spark.mesos.coarse", "true" if spark["mode"] == "coarse" else "false"))
        if spark["executor_uri"]:
            defaults.append(("spark.executor.uri", spark["executor_uri"]))
        else:
            # Executors start from the Spark the agents have where this host has it.
            defaults.append(("spark.mesos.executor.home", spark["spark_home"]))
    extra = {str(k): shq(v) if isinstance(v, bool) else str(v) for k, v in spark["defaults"].items()}
    defaults = [(k, v) for k, v in defaults if k not in extra] + sorted(extra.items())
    java_opts = ""
    if spark["manager"] == "standalone" and len(inv.with_role("spark-master")) > 1 and inv.with_role("zookeeper"):
        # Several standalone masters: one active, the others on standby through ZooKeeper.
        java_opts = (f"-Dspark.deploy.recoveryMode=ZOOKEEPER -Dspark.deploy.zookeeper.url={derive.zk_connect(inv)}"
                     " -Dspark.deploy.zookeeper.dir=/spark")
    return {"spark": spark, "manager": spark["manager"], "daemon": daemon,
            "mesos_library_dir": os.path.dirname(spark["mesos_native_library"]) or "/usr/lib",
            "spark_defaults": defaults, "daemon_java_opts": java_opts}


def _role_files(env: jinja2.Environment, role: str, ctx: dict[str, Any]) -> dict[str, RenderedFile]:
    """The config files one role script embeds, keyed by their name in the template."""
    files: dict[str, RenderedFile] = {}
    if role == "zookeeper":
        zk = ctx["zk"]
        files["zoo_cfg"] = RenderedFile(zk["conf_dir"].rstrip("/") + "/zoo.cfg",
                                        _render(env, "zookeeper/zoo.cfg.j2", ctx))
        files["launcher"] = RenderedFile(HOST.launcher("zookeeper"),
                                         _render(env, "zookeeper/run.sh.j2", ctx), "0755")
    elif role in ("mesos-master", "mesos-agent"):
        kind = role.split("-")[1]
        files["launcher"] = RenderedFile(HOST.launcher(role),
                                         _render(env, f"mesos/{kind}-run.sh.j2", ctx), "0755")
    else:
        conf = ctx["spark"]["conf_dir"].rstrip("/")
        files["spark_defaults"] = RenderedFile(f"{conf}/spark-defaults.conf",
                                               _render(env, "spark/spark-defaults.conf.j2", ctx))
        files["spark_env"] = RenderedFile(f"{conf}/spark-env.sh", _render(env, "spark/spark-env.sh.j2", ctx))
        if ctx["daemon"]:
            files["launcher"] = RenderedFile(HOST.launcher(ctx['daemon']['service']),
                                             _render(env, "spark/daemon-run.sh.j2", ctx), "0755")
    return files


# The nodes' Ironic properties by node name, for the agents with `resources: auto`
# (k1prov.inspection.agent_facts reads them); None where no agent needs them.
Facts = Mapping[str, Mapping[str, Any]]


def _agent_resources(inv: Inventory, node: Node, facts: Facts | None) -> str:
    if facts is None and node in derive.auto_agents(inv):
        return derive.AUTO      # checked, not resolved: `inventory check` does not ask Ironic
    return derive.agent_resources(inv, node, (facts or {}).get(node.name))


def _context(inv: Inventory, node: Node, role: str, facts: Facts | None) -> dict[str, Any]:
    """The role's template values. Without `facts` (inventory check), `auto` resources are
    left as written."""
    ctx: dict[str, Any] = {"node": node, "inventory": inv, "common": common_settings(inv),
                           "cluster_hosts": derive.cluster_hosts(inv),
                           "aventer": {"debian": AVENTER_DEBIAN, "ubuntu": AVENTER_UBUNTU, "rpm": AVENTER_RPM}}
    if role == "zookeeper":
        ctx.update(zk=zookeeper_settings(inv), myid=derive.zookeeper_ids(inv)[node.name],
                   servers=derive.zookeeper_servers(inv))
    elif role in ("mesos-master", "mesos-agent"):
        ctx.update(mesos=mesos_settings(inv), mesos_zk_url=derive.mesos_zk_url(inv),
                   quorum=derive.mesos_quorum(inv), weights=derive.mesos_weights(inv),
                   resources=_agent_resources(inv, node, facts) if role == "mesos-agent" else "",
                   attributes=derive.agent_attributes(inv, node))
    else:
        ctx.update(_spark_context(inv, node, role))
    return ctx


def _service(role: str, ctx: dict[str, Any]) -> str:
    if role in ("zookeeper", "mesos-master", "mesos-agent"):
        return role
    return ctx["daemon"]["service"] if ctx.get("daemon") else ""


def _state_files(role: str, ctx: dict[str, Any]) -> tuple[str, ...]:
    if role == "zookeeper":
        # The member's identity (templates/zookeeper/install.sh.j2 writes it once).
        return (ctx["zk"]["data_dir"].rstrip("/") + "/myid",)
    return ()


def status_functions(inv: Inventory, *, env: jinja2.Environment | None = None) -> str:
    """templates/common/status.sh.j2: the bash functions (k1_service_running,
    k1_status) that tell whether a role's service runs, as the role scripts tell it."""
    return _render(env or environment(inv), "common/status.sh.j2", {})


def _render_role(env: jinja2.Environment, inv: Inventory, node: Node, role: str,
                 facts: Facts) -> RenderedScript:
    order, template, _name = ROLE_PHASES[role]
    ctx = _context(inv, node, role, facts)
    files = _role_files(env, role, ctx)
    ctx["files"] = {key: f.text for key, f in files.items()}
    # The script records its own hash, so hash it with that field empty, then fill it in.
    draft = _render(env, template, {**ctx, "content_sha256": ""})
    digest = hashlib.sha256(draft.encode()).hexdigest()
    text = _render(env, template, {**ctx, "content_sha256": digest})
    return RenderedScript(role=role, phase=order, filename=f"{order}-{role}.sh", text=text,
                          sha256=digest, files=tuple(files.values()), service=_service(role, ctx),
                          state_files=_state_files(role, ctx))


def _facts_given(inv: Inventory, facts: Facts | None) -> Facts:
    if facts is None and derive.auto_agents(inv):
        # A caller that renders for real must have read Ironic (k1prov.inspection.agent_facts).
        raise ConfigError("resources: auto needs the nodes' Ironic properties, and none were read")
    return facts or {}


def render_host(inv: Inventory, node: Node, *, env: jinja2.Environment | None = None,
                facts: Facts | None = None) -> list[RenderedScript]:
    """The node's role scripts in phase order (empty for a node without roles). `facts`:
    the nodes' Ironic properties, needed when an agent has `resources: auto`."""
    env = env or environment(inv)
    given = _facts_given(inv, facts)
    return [_render_role(env, inv, node, role, given) for role in roles_in_order(node)]


def check(inv: Inventory) -> None:
    """Everything rendering refuses in an inventory, without the templates: the template
    path and every host's role context (settings, ZooKeeper ids, Mesos and Spark values),
    built by the same code render_all uses (`inventory check` runs this)."""
    template_dirs(inv)
    for node in inv.nodes:
        for role in roles_in_order(node):
            _context(inv, node, role, None)


def render_all(inv: Inventory, facts: Facts | None = None) -> dict[str, list[RenderedScript]]:
    """Every node's role scripts. Every auto agent's resources are resolved first, so a
    node Ironic knows too little of stops the run before any host is touched."""
    env = environment(inv)
    given = _facts_given(inv, facts)
    return {node.name: render_host(inv, node, env=env, facts=given) for node in inv.nodes}


def plan(inv: Inventory, rendered: dict[str, list[RenderedScript]],
         facts: Facts | None = None) -> dict[str, Any]:
    """What `k1prov render` writes as plan.json: phases, derived values, script hashes."""
    return {
        "cluster": inv.cluster,
        "phases": [{"name": p.name, "role": p.role, "order": p.order, "nodes": [n.name for n in p.nodes]}
                   for p in phases(inv)],
        "zookeeper_ids": derive.zookeeper_ids(inv),
        "zk_connect": derive.zk_connect(inv),
        "mesos_quorum": derive.mesos_quorum(inv) if inv.with_role("mesos-master") else None,
        # What each agent offers (--resources), `auto` resolved from Ironic's properties.
        "agent_resources": {n.name: derive.agent_resources(inv, n, (facts or {}).get(n.name))
                            for n in inv.with_role("mesos-agent")},
        "hosts": {name: [{"role": s.role, "phase": s.phase, "filename": s.filename, "sha256": s.sha256,
                          "files": [f.path for f in s.files]} for s in scripts]
                  for name, scripts in rendered.items()},
    }


def write_rendered(inv: Inventory, out_dir: Path | str, facts: Facts | None = None) -> dict[str, Any]:
    """`k1prov render -o DIR`: DIR/<host>/<phase>-<role>.sh, DIR/<host>/files/<path on
    the host> for every embedded config, and DIR/plan.json. Returns the plan."""
    out = Path(out_dir)
    rendered = render_all(inv, facts)
    for name, scripts in rendered.items():
        host_dir = out / name
        host_dir.mkdir(parents=True, exist_ok=True)
        for script in scripts:
            target = host_dir / script.filename
            target.write_text(script.text)
            target.chmod(0o755)
            for f in script.files:
                if ".." in Path(f.path).parts:
                    raise ConfigError(f"{name}: {script.role}: refusing file path with '..': {f.path}")
                dest = host_dir / "files" / f.path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(f.text)
    result = plan(inv, rendered, facts)
    (out / "plan.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
