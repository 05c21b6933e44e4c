"""`k1prov lab up | down | status | inventory`: the lab of real services over simulated hardware."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from k1prov.cli.common import JsonOpt, handles_errors
from k1prov.presentation import err, out, print_json, rows_table

app = typer.Typer(no_args_is_help=True, help="The lab: Ironic, Glance and BMC simulators on this machine.")

NodesOpt = typer.Option(None, "--nodes", "-n", min=1, max=1000,
                        help="Number of simulated machines (default: 5, or what the lab has).")


# The lab's size and auth mode are remembered here, so `lab up` without --nodes or --auth
# keeps the machines and the mode it has (and `down` stops the services of that mode).
NODES_FILE = "lab-nodes"
AUTH_FILE = "lab-auth"
# And its Ironic shape: "N GROUP,GROUP,..." (`--conductors`, `--conductor-groups`).
CONDUCTORS_FILE = "lab-conductors"
# And what its hosts boot as PID 1 (`--host-init`).
HOST_INIT_FILE = "lab-host-init"

KindOpt = typer.Option("netns", "--kind", metavar="netns|vm",
                       help="netns: simulated machines in network namespaces (default); "
                            "vm: virtual machines behind IPMI and Redfish BMCs (default 2 of them).")

AuthOpt = typer.Option(None, "--auth", metavar="none|http_basic|keystone",
                       help="How Ironic and Glance check callers: Keystone tokens, Ironic's own "
                            "htpasswd file (Glance on loopback without auth), or no auth at all "
                            "(default: keystone, or what the lab has).")


def _lab(nodes: Optional[int] = None, *, remember: bool = False, flaky_bmcs: tuple[str, ...] = (),
         dead_bmcs: tuple[int, ...] = (), auth: Optional[str] = None, conductors: Optional[int] = None,
         conductor_groups: Optional[str] = None, host_init: Optional[str] = None):
    import dataclasses

    from k1prov.lab import Lab, LabSettings

    settings = LabSettings.default()
    saved = settings.root / NODES_FILE
    saved_auth = settings.root / AUTH_FILE
    if nodes is None and saved.is_file():
        nodes = int(saved.read_text().strip() or settings.nodes)
    if auth is None and saved_auth.is_file():
        auth = saved_auth.read_text().strip() or None
    saved_init = settings.root / HOST_INIT_FILE
    if host_init is None and saved_init.is_file():
        host_init = saved_init.read_text().strip() or None
    if host_init is not None:
        settings = dataclasses.replace(settings, host_init=host_init)
    if conductors is None and conductor_groups:
        # `--conductor-groups ga,gb` alone: one conductor per group.
        conductors = len(conductor_groups.split(","))
    saved_conductors = settings.root / CONDUCTORS_FILE
    if conductors is None and saved_conductors.is_file():
        count, _, groups = saved_conductors.read_text().strip().partition(" ")
        conductors = int(count or 0)
        if conductor_groups is None:
            conductor_groups = groups
    if conductors is not None:
        groups = tuple(g.strip() for g in (conductor_groups or "").split(",")) if conductor_groups else ()
        settings = dataclasses.replace(settings, conductors=conductors, conductor_groups=groups)
    if nodes is not None:
        settings = dataclasses.replace(settings, nodes=nodes)
    if auth is not None:
        settings = dataclasses.replace(settings, auth=auth)
    if flaky_bmcs:
        settings = dataclasses.replace(settings, flaky_bmcs=flaky_bmcs)
    if dead_bmcs:
        settings = dataclasses.replace(settings, dead_bmcs=dead_bmcs)
    if remember:
        settings.root.mkdir(parents=True, exist_ok=True)
        saved.write_text(f"{settings.nodes}\n")
        saved_auth.write_text(f"{settings.auth}\n")
        saved_conductors.write_text(f"{settings.conductors} {','.join(settings.conductor_groups)}\n")
        saved_init.write_text(f"{settings.host_init}\n")
    return Lab(settings)


def _kind(kind: str) -> str:
    from k1prov.errors import ConfigError

    if kind not in ("netns", "vm"):
        raise ConfigError(f"--kind {kind!r}: use netns or vm")
    return kind


def _show(status, *, as_json: bool) -> None:
    data = status.to_dict()
    # Whether the lab has a Mesos build to give its hosts, or plainly why not (k1prov.lab.mesos).
    from k1prov.lab.mesos import find_mesos_build, mesos_off_reason
    build = find_mesos_build()
    data["mesos"] = ({"on": True, "tarball": str(build.tarball), "sha512": build.sha512} if build
                     else {"on": False, "reason": mesos_off_reason()})
    if as_json:
        print_json(data)
        return
    out.print(rows_table(data["services"], ["name", "url", "pid", "running", "answers"], title="lab"))
    err.print(f"Mesos: build {build.tarball}" if build else data["mesos"]["reason"], highlight=False)


@app.command("up")
@handles_errors
def up(nodes: Optional[int] = NodesOpt, as_json: bool = JsonOpt, auth: Optional[str] = AuthOpt,
       kind: str = KindOpt,
       image: bool = typer.Option(True, "--image/--no-image",
                                  help="Also build (once) the image lab hosts boot from, and the operator's SSH key."),
       flaky_bmc: list[str] = typer.Option(
           [], "--flaky-bmc", metavar="PORT:DROP:DELAY",
           help="A fault: the BMC on PORT drops answers with probability DROP and sends the others "
                "DELAY s late (e.g. 6231:0.3:1). `lab up` without it makes the BMC healthy again."),
       dead_bmc: list[int] = typer.Option(
           [], "--dead-bmc", metavar="PORT",
           help="A fault: the BMC on PORT is gone (nothing answers; its machine stays as it is). "
                "`lab up` without it brings the BMC back."),
       conductors: Optional[int] = typer.Option(
           None, "--conductors", min=0, max=8,
           help="Ironic's shape. 0: one all-in-one process on SQLite. N: MariaDB, ironic-api and "
                "N ironic-conductor processes joined by JSON-RPC, as sites with several conductors "
                "run it (default: 0, or what the lab has)."),
       conductor_groups: Optional[str] = typer.Option(
           None, "--conductor-groups", metavar="GROUP,GROUP,...",
           help="The conductor group of each conductor, in order (default: all in the default "
                "group \"\", which takes the nodes without conductor_group)."),
       host_init: Optional[str] = typer.Option(
           None, "--host-init", metavar="plain|systemd",
           help="What a deployed host runs as PID 1. systemd: as a systemd container does, so role "
                "services are systemd units, restarted when they die and back after a power cycle "
                "(RSS 8 MiB more per host, PSS no more; boot to SSH about 0.7 s longer). plain: "
                "k1p-init, services under pid files. Default: systemd, or what the lab has. Hosts "
                "take it at their next boot.")):
    """Install (first time) and start the lab's services. A no-op when they already run."""
    if _kind(kind) == "vm":
        from k1prov.cli import lab_vm_cmd
        return lab_vm_cmd.up(nodes, as_json=as_json)
    lab = _lab(nodes, remember=True, flaky_bmcs=tuple(flaky_bmc), dead_bmcs=tuple(dead_bmc), auth=auth,
               conductors=conductors, conductor_groups=conductor_groups, host_init=host_init)
    say = lambda msg: err.print(f"[cyan]>[/] {msg}", highlight=False)  # noqa: E731
    status = lab.up(progress=say)
    if image and status.ok:
        lab.prepare_hosts(progress=say)
    if status.ok:
        from k1prov.lab.mesos import publish
        build, where = publish(lab.settings.http_dir)
        say(f"Mesos: {build.tarball.name} served as {lab.settings.http_url}/{where}" if build else
            f"{where}; inventories/lab.yaml needs it: use inventories/lab-standalone.yaml "
            "(ZooKeeper, standalone Spark), or `k1prov lab inventory`, which leaves Mesos out")
    _show(status, as_json=as_json)
    raise typer.Exit(0 if status.ok else 1)


@app.command("down")
@handles_errors
def down(kind: str = KindOpt):
    """Stop every process the lab started."""
    if _kind(kind) == "vm":
        from k1prov.cli import lab_vm_cmd
        return lab_vm_cmd.down()
    _lab().down()
    err.print("lab stopped")


@app.command("status")
@handles_errors
def status(as_json: bool = JsonOpt, kind: str = KindOpt):
    """Each lab service, its URL and whether it answers."""
    if _kind(kind) == "vm":
        from k1prov.cli import lab_vm_cmd
        return lab_vm_cmd.status(as_json=as_json)
    st = _lab().status()
    _show(st, as_json=as_json)
    raise typer.Exit(0 if st.ok else 1)


@app.command("inventory")
@handles_errors
def inventory(nodes: Optional[int] = NodesOpt, kind: str = KindOpt,
              output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
              mesos: Optional[bool] = typer.Option(
                  None, "--mesos/--no-mesos",
                  help="Mesos masters and agents, Spark on Mesos (default when the lab has a Mesos "
                       "build), or ZooKeeper and standalone Spark only.")):
    """Print an inventory that matches the lab (all its simulated machines, or --nodes of them;
    with --kind vm, the VM lab's machines, or the VM lab of --nodes machines)."""
    from k1prov.errors import ConfigError
    from k1prov.lab.mesos import find_mesos_build, mesos_off_reason

    if _kind(kind) == "vm":
        from k1prov.cli import lab_vm_cmd

        if mesos:
            raise ConfigError("--mesos: the VM lab's inventory has no roles yet")
        text = lab_vm_cmd.inventory_text(nodes)
    else:
        off = "" if find_mesos_build() else mesos_off_reason()
        if mesos and off:
            raise ConfigError(f"--mesos: {off}")
        if mesos is None and off:
            # Said on stderr, so that the operator knows this inventory has no Mesos and why.
            err.print(f"{off}; this inventory runs ZooKeeper and standalone Spark", highlight=False)
        text = _lab().inventory_yaml(nodes=nodes, mesos=not off if mesos is None else mesos)
    if output:
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)
