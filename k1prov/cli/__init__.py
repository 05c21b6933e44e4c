"""The `k1prov` command: a thin Typer shell over k1prov.Provisioner and k1prov.lab.Lab."""
from __future__ import annotations

import logging
import signal

import typer

from k1prov.cli import inventory_cmd, lab_cmd, nodes_cmd, run_cmd
from k1prov.cli import deploy_cmd, images_cmd
from k1prov.cli import configure_cmd
from k1prov.cli import bench_cmd
from k1prov.cli import cluster_cmd, runs_cmd
from k1prov.cli.common import DEBUG

QUIET_LIBRARIES = ("openstack", "keystoneauth", "keystoneauth1", "paramiko", "urllib3", "requests",
                   "stevedore", "invoke", "fabric", "os_service_types")

# Locals are never shown: BMC passwords live in them.
app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False, add_completion=True,
                  help="Bare metal to ZooKeeper / Mesos / Spark through Ironic and Glance.")
app.add_typer(inventory_cmd.app, name="inventory")
app.add_typer(nodes_cmd.app, name="nodes")
app.add_typer(lab_cmd.app, name="lab")
app.add_typer(images_cmd.app, name="images")
app.add_typer(bench_cmd.app, name="bench")
app.add_typer(cluster_cmd.app, name="cluster")
app.add_typer(runs_cmd.app, name="runs")
app.command("deploy")(deploy_cmd.deploy)
app.command("undeploy")(deploy_cmd.undeploy)
app.command("reimage")(deploy_cmd.reimage)
app.command("run", context_settings=run_cmd.CONTEXT_SETTINGS)(run_cmd.run)
app.command("render")(configure_cmd.render)
app.command("configure")(configure_cmd.configure)


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Tracebacks and debug logs."),
            verbose: bool = typer.Option(False, "--verbose", "-v", help="Info logs on stderr.")):
    DEBUG["on"] = debug
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not debug:
        # Library loggers stay quiet unless asked (--debug): the SDK logs request bodies,
        # keystoneauth a warning per failed discovery, paramiko a traceback per failed
        # connection. k1prov reports each of those failures itself, in one line.
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.CRITICAL)


def main() -> None:
    # Ctrl-C (SIGINT) is k1prov's graceful stop: in-flight work finished or cancelled, the
    # report and the run record written. A k1prov started in the background of a script
    # (`k1prov deploy &` in sh, without job control) inherits SIGINT ignored, and Python then
    # raises no KeyboardInterrupt for it: `kill -INT` did nothing and only SIGTERM (no report,
    # no record) ended the run. Seen: a deploy under a profiler ignored two. So k1prov takes
    # SIGINT back.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    app()
