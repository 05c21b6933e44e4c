"""`k1prov lab up|down|status --kind vm`: the lab whose machines are virtual machines
(k1prov.lab.vm). Called from k1prov.cli.lab_cmd when --kind is vm."""
from __future__ import annotations

from typing import Optional

import typer

from k1prov.presentation import err, out, print_json, rows_table

# `lab up --kind vm` without --nodes keeps the size the VM lab has.
NODES_FILE = "lab-nodes"


def _lab(nodes: Optional[int] = None, *, remember: bool = False):
    from k1prov.lab.vm import VmLab, VmLabSettings

    settings = VmLabSettings.default()
    saved = settings.root / NODES_FILE
    if nodes is None and saved.is_file():
        nodes = int(saved.read_text().strip() or settings.nodes)
    if nodes is not None:
        settings = VmLabSettings.default(nodes=nodes)
    if remember:
        settings.root.mkdir(parents=True, exist_ok=True)
        saved.write_text(f"{settings.nodes}\n")
    return VmLab(settings)


def _show(status, *, as_json: bool) -> None:
    data = status.to_dict()
    if as_json:
        print_json(data)
        return
    out.print(rows_table(data["services"], ["name", "pid", "running", "answers", "detail"],
                         title=f"VM lab ({data['accel']}, bridge {data['bridge']})"))
    rows = [{"name": m["name"], "state": m["state"], "mac": m["mac"], "bmc": _bmc(m["bmc"]),
             "serial log": m["serial_log"]} for m in data["machines"]]
    out.print(rows_table(rows, ["name", "state", "mac", "bmc", "serial log"], title="machines"))


def _bmc(bmc: dict) -> str:
    if bmc["type"] == "ipmi":
        return f"ipmi {bmc['address']}:{bmc['port']}"
    return f"redfish {bmc['url']}{bmc['system']}"


def up(nodes: Optional[int], *, as_json: bool) -> None:
    lab = _lab(nodes, remember=True)
    say = lambda msg: err.print(f"[cyan]>[/] {msg}", highlight=False)  # noqa: E731
    status = lab.up(progress=say)
    _show(status, as_json=as_json)
    raise typer.Exit(0 if status.ok else 1)


def down() -> None:
    _lab().down()
    err.print("VM lab stopped")


def status(*, as_json: bool) -> None:
    st = _lab().status()
    _show(st, as_json=as_json)
    raise typer.Exit(0 if st.ok else 1)


def inventory_text(nodes: Optional[int]) -> str:
    """The inventory of the VM lab (its size, or a VM lab of `nodes` machines)."""
    from k1prov.lab.vm_inventory import render_vm_inventory

    return render_vm_inventory(_lab(nodes).settings)
