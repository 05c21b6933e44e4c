"""Each Ironic verb's decisions against a recording stand-in for the SDK connection
(tests/unit/sdk_standin.py), the way metalsmith tests its provisioner: every provision
state, HTTP 409/503 that get past the SDK's own retries, a timed-out action, partial
failure, --limit/--group. No network, no root; the lab tests keep the real services."""
from __future__ import annotations

from dataclasses import replace

import pytest

import k1prov.context
import k1prov.ssh_ready
from k1prov.errors import CloudError
from k1prov.fanout import Status
from k1prov.inventory import parse_inventory
from k1prov.ironic_states import WAY_ON, settles_to
from k1prov.provisioner import Provisioner
from k1prov.settings import DEFAULT_TIMEOUTS, MANAGE_RETRIES
from k1prov.ssh import CommandResult
from k1prov.verb_report import EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL

from sdk_standin import RecordingConnection, http_error

INVENTORY = """\
cluster: orch
cloud: {ironic_url: "http://127.0.0.1:9"}
ssh: {user: root, public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForOrchestrationTests000000 t"]}
images:
  user: {name: u, url: "http://127.0.0.1:9/u.raw", bypass_glance: true,
         checksum: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}
defaults:
  bmc: {address: 127.0.0.1, username: u, password: "pw"}
roles:
  spark: {source: preinstalled, manager: standalone}
nodes:
  - {name: n1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1, roles: [spark-master]}
  - {name: n2, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2, roles: [spark-client]}
  - {name: n3, bmc: {port: 7003}, macs: ["52:54:00:00:00:03"], address: 10.0.0.3, roles: [spark-client]}
  - {name: n4, bmc: {port: 7004}, macs: ["52:54:00:00:00:04"], address: 10.0.0.4, roles: [spark-client]}
"""
IMAGE = "http://127.0.0.1:9/u.raw"


@pytest.fixture
def ironic(monkeypatch):
    conn = RecordingConnection(cluster="orch")
    monkeypatch.setattr(k1prov.context, "connect", lambda cloud, api_timeout: conn)
    return conn.baremetal


@pytest.fixture
def ssh(monkeypatch):
    answered: list[str] = []

    def run_command(target, command, *, connect_timeout, command_timeout):
        answered.append(target.host)
        return CommandResult(target.host, 0, "1.0 0 100\n", "")   # booted a second ago

    monkeypatch.setattr(k1prov.ssh_ready, "run_command", run_command)
    return answered


def prov(tmp_path, **timeouts) -> Provisioner:
    inv = parse_inventory(INVENTORY, path=str(tmp_path / "inv.yaml"))
    return Provisioner(inv, timeouts=replace(DEFAULT_TIMEOUTS, **timeouts), state_root=tmp_path / "state")


def rows(report) -> dict[str, tuple[Status, str]]:
    return {o.node: (o.status, o.action) for o in report.outcomes}


def actions(ironic) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for method, args in ironic.calls:
        if method == "provision":          # the provision PUT (IronicNodes.start_action)
            out.setdefault(ironic.by_id[args[0]].name, []).append(args[1])
    return out


# ---- enroll ---------------------------------------------------------------------------

def test_enroll_drives_each_state_to_available_with_the_fewest_actions(tmp_path, ironic, bmc_logins):
    ironic.add("n2", provision_state="enroll")
    ironic.add("n3", provision_state="adopt failed")
    ironic.add("n4", provision_state="manageable")
    report = prov(tmp_path).enroll()
    assert report.exit_code() == EXIT_OK
    # The found nodes carry no password k1prov sent: their login is tried before it is.
    assert sorted(bmc_logins) == ["n2", "n3", "n4"]
    assert ironic.names_called("create_node") == ["n1"]
    assert actions(ironic) == {"n1": ["manage", "provide"], "n2": ["manage", "provide"],
                               "n3": ["manage", "provide"], "n4": ["provide"]}
    assert {o.node: o.provision_state for o in report.outcomes} == {f"n{i}": "available" for i in range(1, 5)}
    again = prov(tmp_path).enroll()
    assert actions(ironic) == {"n1": ["manage", "provide"], "n2": ["manage", "provide"],
                               "n3": ["manage", "provide"], "n4": ["provide"]}   # nothing new
    assert {action for _, action in rows(again).values()} == {"unchanged"}


def test_a_failed_bmc_check_fails_that_node_alone(tmp_path, ironic):
    ironic.action_fails[("n2", "manage")] = "IPMI: wrong password"
    report = prov(tmp_path).enroll()
    assert report.exit_code() == EXIT_PARTIAL
    bad = {o.node: o for o in report.failed}
    assert list(bad) == ["n2"] and "IPMI: wrong password" in bad["n2"].error
    assert "provide" not in actions(ironic)["n2"]
    assert all(actions(ironic)[n] == ["manage", "provide"] for n in ("n1", "n3", "n4"))


def test_a_bmc_that_did_not_answer_is_managed_again_and_the_row_counts_the_retries(tmp_path, ironic):
    failure = "Failed to get power state for node n2. Error: IPMI call failed: power status."
    ironic.action_fails[("n2", "manage")] = failure
    ironic.action_fails_times[("n2", "manage")] = MANAGE_RETRIES
    ironic.action_fails[("n3", "manage")] = failure                  # never answers
    ironic.action_fails[("n4", "manage")] = "Unsupported driver interface"  # not the BMC: no retry
    report = prov(tmp_path).enroll()
    rows_ = {o.node: o for o in report.outcomes}
    assert rows_["n2"].status is Status.OK and rows_["n2"].provision_state == "available"
    assert f"manage retried {MANAGE_RETRIES}x (the BMC did not answer Ironic's check)" in rows_["n2"].changes
    assert actions(ironic)["n2"] == ["manage"] * (MANAGE_RETRIES + 1) + ["provide"]
    # Bounded, and the failed row names the node's BMC as the inventory has it.
    assert actions(ironic)["n3"] == ["manage"] * (MANAGE_RETRIES + 1)
    assert rows_["n3"].status is Status.FAILED and "IPMI call failed" in rows_["n3"].error
    assert rows_["n3"].error.endswith("(BMC 127.0.0.1:7003)"), rows_["n3"].error
    assert actions(ironic)["n4"] == ["manage"] and "BMC" not in rows_["n4"].error
    assert actions(ironic)["n1"] == ["manage", "provide"]


def test_an_ipmitool_run_that_timed_out_is_the_bmc_not_answering():
    from k1prov.ironic_states import bmc_did_not_answer

    # Ironic 39's words for a deploy whose ipmitool outlived its limit (a BMC dropping answers).
    assert bmc_did_not_answer("Deploy step deploy.deploy failed with TimeoutExpired: Command "
                              "'('ipmitool', '-I', 'lanplus', '-H', '127.0.0.1', 'power', 'status')' "
                              "timed out after 60 seconds")
    assert not bmc_did_not_answer("Deploy step deploy.deploy failed with TimeoutExpired: Command "
                                  "'('qemu-img', 'convert')' timed out after 60 seconds")


def test_409_after_the_sdks_retries_fails_the_node_unless_ironic_took_the_action(tmp_path, ironic):
    for i in range(1, 5):
        ironic.add(f"n{i}", provision_state="enroll")
    ironic.fail_action[("n1", "manage")] = http_error(409, "Node n1 is locked by host c1")
    ironic.fail_action[("n2", "manage")] = http_error(409, "Node n2 is locked by host c1")
    ironic.action_takes_effect_anyway.add(("n2", "manage"))
    report = prov(tmp_path).enroll()
    status = rows(report)
    assert status["n1"][0] is Status.FAILED and "409" in next(o.error for o in report.outcomes if o.node == "n1")
    # n2's request answered 409, but Ironic had started verifying: it counts as started
    # and is waited for like the others (a provision action is never simply sent again).
    assert status["n2"][0] is Status.OK
    assert actions(ironic)["n2"] == ["manage", "provide"]
    assert status["n3"][0] is Status.OK and status["n4"][0] is Status.OK


def test_a_refused_create_fails_that_node_and_the_others_go_on(tmp_path, ironic):
    ironic.create_errors["n3"] = http_error(400, "Invalid driver_info")
    report = prov(tmp_path).enroll()
    assert report.exit_code() == EXIT_PARTIAL
    assert [o.node for o in report.failed] == ["n3"]
    assert "Invalid driver_info" in report.failed[0].error
    assert sorted(actions(ironic)) == ["n1", "n2", "n4"]


def test_a_503_on_a_create_is_ironic_busy_and_the_node_is_tried_again(tmp_path, ironic):
    """Issue 22: no free conductor worker is load, not a node failure."""
    ironic.create_errors["n3"] = [http_error(503, "No free conductor workers")] * 2
    report = prov(tmp_path).enroll()
    assert report.exit_code() == EXIT_OK
    ensured = dict(report.phases)["ensure"]
    assert ensured.by_key("n3").attempts == 3 and ensured.by_key("n1").attempts == 1
    assert sorted(actions(ironic)) == ["n1", "n2", "n3", "n4"]


def test_a_dead_conductor_is_temporary_and_another_500_is_a_node_failure(tmp_path, ironic):
    """Issue 22: the API's 500 for a conductor it cannot reach over JSON-RPC (dead, its
    nodes not yet moved to a live one) is tried again; any other 500 fails the node."""
    unreachable = http_error(500, "Unable to establish connection to http://127.144.21.2:8089/: "
                                  "HTTPConnectionPool(host='127.144.21.2', port=8089): refused")
    ironic.create_errors["n3"] = [unreachable] * 2
    ironic.create_errors["n4"] = http_error(500, "Node n4 could not be created: internal error")
    report = prov(tmp_path).enroll()
    assert report.exit_code() == EXIT_PARTIAL
    ensured = dict(report.phases)["ensure"]
    assert ensured.by_key("n3").attempts == 3
    (failed,) = report.failed
    assert failed.node == "n4" and "HTTP 500: Node n4 could not be created" in failed.error
    assert sorted(actions(ironic)) == ["n1", "n2", "n3"]


def test_an_ironic_that_stays_busy_times_that_node_out_and_the_others_go_on(tmp_path, ironic):
    ironic.create_errors["n3"] = http_error(503, "No free conductor workers")
    report = prov(tmp_path, api_request=1.0).enroll()     # the item's timeout: 3 x api_request
    assert report.exit_code() == EXIT_PARTIAL
    (failed,) = report.failed
    # The timeout says what kept the node: Ironic's last answer.
    assert failed.node == "n3" and failed.error.startswith("timed out after 3s (last try: ")
    assert "HTTP 503: No free conductor workers" in failed.error
    assert sorted(actions(ironic)) == ["n1", "n2", "n4"]


def test_503_on_the_listing_stops_the_verb_with_one_cloud_error(tmp_path, ironic):
    ironic.list_errors.append(http_error(503, "No free conductor workers"))
    with pytest.raises(CloudError, match="503"):
        prov(tmp_path).enroll()
    assert ironic.names_called("create_node") == []


def test_enroll_group_and_limit(tmp_path, ironic):
    p = prov(tmp_path)
    assert sorted(rows(p.enroll(group="spark-client", limit=["n[1-3]"]))) == ["n2", "n3"]
    assert ironic.names_called("create_node") == ["n2", "n3"]


# ---- deploy / undeploy ------------------------------------------------------------------

def test_deploy_acts_on_deployable_states_only(tmp_path, ironic, ssh):
    ironic.add("n1", provision_state="available")
    ironic.add("n2", provision_state="deploy failed")
    ironic.add("n3", provision_state="active", instance_info={"image_source": IMAGE})
    ironic.add("n4", provision_state="manageable")
    report = prov(tmp_path).deploy()
    assert rows(report) == {"n1": (Status.OK, "deployed"), "n2": (Status.OK, "deployed"),
                            "n3": (Status.OK, "unchanged"), "n4": (Status.FAILED, "")}
    assert next(o.error for o in report.outcomes if o.node == "n4") == \
        "node is manageable; deploy needs available"
    assert actions(ironic) == {"n1": ["active"], "n2": ["active"]}
    assert sorted(ssh) == ["n1", "n2"]
    # instance_info was written before the deploy request, with the image's checksum.
    assert ironic.node("n1").instance_info["image_source"] == IMAGE
    assert report.exit_code() == EXIT_PARTIAL


def test_a_node_that_never_gets_active_times_out_alone(tmp_path, ironic, ssh):
    for i in range(1, 4):
        ironic.add(f"n{i}", provision_state="available")
    ironic.never_reaches.add("n2")
    report = prov(tmp_path, deploy=0.2).deploy(limit=["n[1-3]"])
    status = rows(report)
    assert status["n2"][0] is Status.TIMEOUT
    assert "not active after" in next(o.error for o in report.outcomes if o.node == "n2")
    assert status["n1"] == (Status.OK, "deployed") and status["n3"] == (Status.OK, "deployed")
    assert sorted(ssh) == ["n1", "n3"]          # no SSH wait for the node that is not active


def test_undeploy_per_state(tmp_path, ironic):
    ironic.add("n1", provision_state="active")
    ironic.add("n2", provision_state="available")
    ironic.add("n3", provision_state="deploying")
    report = prov(tmp_path).undeploy()
    assert rows(report) == {"n1": (Status.OK, "undeployed"), "n2": (Status.OK, "unchanged"),
                            "n3": (Status.FAILED, ""), "n4": (Status.OK, "not enrolled")}
    assert actions(ironic) == {"n1": ["deleted"]}


def test_undeploy_whose_automated_cleaning_fails_names_ironics_error_and_the_way_on(tmp_path, ironic):
    """Automated cleaning (Ironic's default, the lab's too) runs inside undeploy's one wait
    for available; a node it fails is left in clean failed, and its row says so, once."""
    ironic.add("n1", provision_state="active")
    ironic.add("n2", provision_state="active")
    ironic.action_fails[("n2", "deleted")] = "Agent returned error for clean step erase_devices_metadata"
    ironic.fails_into[("n2", "deleted")] = "clean failed"
    report = prov(tmp_path).undeploy(limit=["n[1-2]"])
    assert rows(report) == {"n1": (Status.OK, "undeployed"), "n2": (Status.FAILED, "")}
    error = report.failed[0].error
    assert error.startswith("deleted: Agent returned error for clean step erase_devices_metadata")
    assert error.endswith(WAY_ON["clean failed"]) and error.count("left in clean failed") == 1
    assert report.failed[0].provision_state == "clean failed"


def test_a_provide_whose_cleaning_fails_names_the_way_on_and_enroll_takes_it_on_again(tmp_path, ironic):
    ironic.add("n1", provision_state="manageable")
    ironic.action_fails[("n1", "provide")] = "Failed to prepare to clean: deploy_kernel missing"
    ironic.action_fails_times[("n1", "provide")] = 1
    first = prov(tmp_path).enroll(limit=["n1"])
    assert first.failed[0].provision_state == "clean failed"
    assert first.failed[0].error.endswith(WAY_ON["clean failed"])
    again = prov(tmp_path).enroll(limit=["n1"])               # the way on it names
    assert rows(again)["n1"][0] is Status.OK and again.outcomes[0].provision_state == "available"
    assert actions(ironic)["n1"] == ["provide", "manage", "provide"]


@pytest.mark.parametrize("state, target, end", [
    ("clean wait", "available", "available"),      # an undeploy's or a provide's cleaning
    ("cleaning", "manageable", "manageable"),      # `nodes clean`'s
    ("clean wait", None, "available"),
    ("deleting", "available", "available"),
    ("verifying", "manageable", "manageable"),
    ("available", None, None),
])
def test_an_interrupted_cleaning_settles_where_ironic_takes_it(state, target, end):
    from types import SimpleNamespace

    assert settles_to(SimpleNamespace(provision_state=state, target_provision_state=target)) == end


# ---- delete / list ----------------------------------------------------------------------

def test_delete_leaves_foreign_and_deployed_nodes_alone(tmp_path, ironic):
    ironic.add("n1", provision_state="available")
    ironic.add("n2", provision_state="available", owner="other-cluster")
    ironic.add("n3", provision_state="active")
    report = prov(tmp_path).delete_nodes()
    assert rows(report) == {"n1": (Status.OK, "deleted"), "n2": (Status.FAILED, ""),
                            "n3": (Status.FAILED, ""), "n4": (Status.OK, "absent")}
    assert ironic.names_called("delete_node") == ["n1"]
    assert "cluster 'other-cluster'" in next(o.error for o in report.outcomes if o.node == "n2")
    assert "undeploy it first" in next(o.error for o in report.outcomes if o.node == "n3")


def test_list_with_an_empty_selection_exits_nothing(tmp_path, ironic):
    report = prov(tmp_path).list_nodes(group="mesos-agent")
    assert report.outcomes == [] and report.exit_code() == EXIT_NOTHING


# ---- nodes clean (issue 21) --------------------------------------------------------------

def test_clean_manages_cleans_with_the_erase_steps_and_provides(tmp_path, ironic):
    ironic.add("n1", provision_state="available")
    ironic.add("n2", provision_state="manageable")
    ironic.add("n3", provision_state="clean failed", last_error="earlier erase failed")
    ironic.add("n4", provision_state="active")
    report = prov(tmp_path).clean_nodes(erase="full")
    assert rows(report) == {"n1": (Status.OK, "cleaned (full)"), "n2": (Status.OK, "cleaned (full)"),
                            "n3": (Status.OK, "cleaned (full)"), "n4": (Status.FAILED, "")}
    assert "node is active" in next(o.error for o in report.outcomes if o.node == "n4")
    assert actions(ironic) == {"n1": ["manage", "clean", "provide"], "n2": ["clean", "provide"],
                               "n3": ["manage", "clean", "provide"]}
    assert ironic.clean_steps == {n: [{"interface": "deploy", "step": "erase_devices"}]
                                  for n in ("n1", "n2", "n3")}
    assert {o.node: o.provision_state for o in report.outcomes if o.node != "n4"} == \
        {"n1": "available", "n2": "available", "n3": "available"}
    assert report.exit_code() == EXIT_PARTIAL


def test_a_failed_clean_names_ironics_error_and_the_way_on(tmp_path, ironic):
    ironic.add("n1", provision_state="available")
    ironic.add("n2", provision_state="available")
    ironic.action_fails[("n2", "clean")] = "Agent returned error for clean step erase_devices_metadata"
    report = prov(tmp_path).clean_nodes(limit=["n[1-2]"])
    failed = {o.node: o for o in report.failed}
    assert list(failed) == ["n2"]
    assert failed["n2"].error.startswith("clean: Agent returned error for clean step erase_devices_metadata")
    assert failed["n2"].error.endswith(WAY_ON["clean failed"])
    assert "fix the cause, then run `k1prov nodes clean` again" in failed["n2"].error
    assert failed["n2"].provision_state == "clean failed"
    assert actions(ironic)["n2"] == ["manage", "clean"]          # not provided
    assert ironic.clean_steps["n1"] == [{"interface": "deploy", "step": "erase_devices_metadata"}]


# ---- role fit (issue 21) ---------------------------------------------------------------------

def test_deploy_refuses_a_node_too_small_for_its_roles_before_writing_its_disk(tmp_path, ironic, ssh):
    ironic.add("n1", provision_state="available", properties={"memory_mb": 512, "cpus": 8})
    ironic.add("n2", provision_state="available", properties={"memory_mb": "4096", "local_gb": 100})
    ironic.add("n3", provision_state="available")                       # no facts: not checked
    report = prov(tmp_path).deploy(limit=["n[1-3]"])
    errors = {o.node: o.error for o in report.failed}
    assert list(errors) == ["n1"]
    assert errors["n1"] == ("refused before deploying: spark-master need 1024 MB of memory; Ironic "
                            "says the node has 512 (properties.memory_mb); raise it, lower "
                            "roles.common.needs, or move a role")
    assert actions(ironic) == {"n2": ["active"], "n3": ["active"]}
    assert report.exit_code() == EXIT_PARTIAL


def test_reimage_refuses_a_node_too_small_and_the_inventory_can_lower_the_need(tmp_path, ironic, ssh):
    ironic.add("n1", provision_state="active", properties={"memory_mb": 512},
               instance_info={"image_source": IMAGE})
    refused = prov(tmp_path).reimage(["n1"])
    assert "need 1024 MB of memory" in refused.failed[0].error and actions(ironic) == {}
    lowered = INVENTORY.replace("  spark: {source: preinstalled, manager: standalone}\n",
                                "  spark: {source: preinstalled, manager: standalone}\n"
                                "  common: {needs: {spark-master: {memory_mb: 512}}}\n")
    inv = parse_inventory(lowered, path=str(tmp_path / "inv.yaml"))
    report = Provisioner(inv, state_root=tmp_path / "state").reimage(["n1"])
    assert report.exit_code() == EXIT_OK, [o.error for o in report.failed]
    assert actions(ironic) == {"n1": ["rebuild"]}

# ---- cluster up's ssh phase: a node that lost power since its deploy ------------------------

def test_an_active_node_that_does_not_answer_is_powered_on_through_ironic_then_waited_for(
        tmp_path, ironic, monkeypatch):
    """Ironic still calls n3 on (its power sync off or not due), but its BMC lost power: the
    first look (one connect timeout) finds it silent, it is powered on through Ironic, then
    waited for; the nodes that answered are not touched (issue 23, fault 6)."""
    import k1prov.cluster
    from k1prov.errors import TransportError

    for i in range(1, 5):
        ironic.add(f"n{i}", provision_state="active", power_state="power on")
    ironic.real_power["n3"] = "power off"

    def run_command(target, command, *, connect_timeout, command_timeout):
        if ironic.real_power.get(target.host, "power on") != "power on":
            raise TransportError(target.host, "connection timed out", transient=True)
        return CommandResult(target.host, 0, "1.0 0 100\n", "")

    monkeypatch.setattr(k1prov.ssh_ready, "run_command", run_command)
    p = prov(tmp_path, ssh_connect=0.5, ssh_ready=5.0)
    report = k1prov.cluster._ssh_phase(p.context, ["n1", "n2", "n3", "n4"])
    assert [c for c in ironic.calls if c[0] == "power"] == [("power", ("n3", "power on"))]
    assert rows(report) == {"n1": (Status.OK, "ssh ok"), "n2": (Status.OK, "ssh ok"),
                            "n3": (Status.OK, "ssh ok after a power on through Ironic"), "n4": (Status.OK, "ssh ok")}
    assert [name for name, _ in report.phases] == ["ssh.ready", "ironic.power", "ssh.ready after power on"]


def test_a_node_that_stays_silent_after_its_power_on_fails_alone(tmp_path, ironic, monkeypatch):
    import k1prov.cluster
    from k1prov.errors import TransportError

    for i in range(1, 5):
        ironic.add(f"n{i}", provision_state="active", power_state="power on")

    def run_command(target, command, *, connect_timeout, command_timeout):
        if target.host == "n2":
            raise TransportError(target.host, "connection timed out", transient=True)
        return CommandResult(target.host, 0, "1.0 0 100\n", "")

    monkeypatch.setattr(k1prov.ssh_ready, "run_command", run_command)
    report = k1prov.cluster._ssh_phase(prov(tmp_path, ssh_connect=0.3, ssh_ready=1.0).context,
                                       ["n1", "n2", "n3", "n4"])
    assert [c for c in ironic.calls if c[0] == "power"] == [("power", ("n2", "power on"))]
    bad = {o.node: o for o in report.outcomes if o.status is not Status.OK}
    assert list(bad) == ["n2"] and "not ready after 1 s" in bad["n2"].error, bad


# ---- nodes inspect (issue 21) ----------------------------------------------------------------

RAMDISK = {"deploy_kernel": "k", "deploy_ramdisk": "r"}


def inspected(mac: str, disk_gb: int = 4) -> dict:
    """What Ironic returns for GET /v1/nodes/<id>/inventory after an agent inspection."""
    return {"inventory": {"interfaces": [{"name": "eth0", "mac_address": mac.upper(), "ipv4_address": "10.0.9.9"}],
                          "disks": [{"name": "/dev/loop7", "size": disk_gb * 2**30, "rotational": False,
                                     "model": ""}],
                          "memory": {"total": 8 * 2**30, "physical_mb": 8192},
                          "cpu": {"model_name": "Lab CPU", "count": 2}},
            "plugin_data": {}}


def test_inspect_manages_inspects_and_each_node_ends_where_it_started(tmp_path, ironic):
    ironic.add("n1", provision_state="available", driver_info=dict(RAMDISK),
               properties={"memory_mb": 8192, "cpus": 2, "local_gb": 3, "cpu_arch": "x86_64"})
    ironic.add("n2", provision_state="manageable", driver_info=dict(RAMDISK))
    ironic.add("n3", provision_state="inspect failed", driver_info=dict(RAMDISK), last_error="earlier")
    ironic.add("n4", provision_state="active", driver_info=dict(RAMDISK))
    for n in ("n1", "n2", "n3"):
        ironic.inventories[n] = inspected(f"52:54:00:00:00:0{n[1]}")
    report = prov(tmp_path).inspect_nodes()
    assert rows(report) == {"n1": (Status.OK, "inspected"), "n2": (Status.OK, "inspected"),
                            "n3": (Status.OK, "inspected"), "n4": (Status.FAILED, "")}
    assert "node is active" in next(o.error for o in report.outcomes if o.node == "n4")
    # Available goes back to available; manageable (and a failed inspection) stay manageable.
    assert actions(ironic) == {"n1": ["manage", "inspect", "provide"], "n2": ["inspect"],
                               "n3": ["manage", "inspect"]}
    hw = next(o.hardware for o in report.outcomes if o.node == "n1")
    assert hw == {"cpus": 2, "memory_mb": 8192, "local_gb": 3, "cpu_arch": "x86_64", "cpu_model": "Lab CPU",
                  "memory_physical_mb": 8192,
                  "disks": [{"name": "/dev/loop7", "size_bytes": 4 * 2**30, "rotational": False, "model": None}],
                  "nics": [{"name": "eth0", "mac": "52:54:00:00:00:01", "ipv4": "10.0.9.9"}]}
    assert report.exit_code() == EXIT_PARTIAL


def test_inspected_macs_that_differ_from_the_inventory_are_named(tmp_path, ironic):
    ironic.add("n1", provision_state="manageable", driver_info=dict(RAMDISK))
    ironic.inventories["n1"] = inspected("52:54:00:00:00:99")
    warnings: list[str] = []
    p = prov(tmp_path)
    p.context.warn = warnings.append
    (row,) = p.inspect_nodes(limit=["n1"]).outcomes
    assert row.status is Status.OK
    assert row.action == ("inspected (the inventory's MAC 52:54:00:00:00:01 is on no NIC inspection found; "
                          "NIC MAC 52:54:00:00:00:99 is not in the inventory)")
    assert warnings == [f"n1: {row.action[len('inspected ('):-1]}"]


def test_a_failed_inspection_names_ironics_error_and_the_way_on(tmp_path, ironic):
    ironic.add("n1", provision_state="available", driver_info=dict(RAMDISK))
    ironic.add("n2", provision_state="available", driver_info=dict(RAMDISK))
    ironic.inventories["n1"] = inspected("52:54:00:00:00:01")
    ironic.action_fails[("n2", "inspect")] = "failed to run inspection hooks: no memory information"
    report = prov(tmp_path).inspect_nodes(limit=["n[1-2]"])
    failed = {o.node: o for o in report.failed}
    assert list(failed) == ["n2"]
    assert failed["n2"].error.startswith("inspect: failed to run inspection hooks: no memory information")
    assert "left in inspect failed" in failed["n2"].error
    assert failed["n2"].error.endswith("(or `k1prov nodes enroll` to take it back to available)")
    assert failed["n2"].provision_state == "inspect failed"
    assert actions(ironic)["n2"] == ["manage", "inspect"]          # not provided
    assert failed["n2"].hardware is None


def test_inspect_refuses_a_node_without_a_deploy_ramdisk_and_switches_no_inspect_to_agent(tmp_path, ironic):
    ironic.add("n1", provision_state="manageable")
    ironic.add("n2", provision_state="manageable", driver_info=dict(RAMDISK), inspect_interface="no-inspect")
    ironic.inventories["n2"] = inspected("52:54:00:00:00:02")
    report = prov(tmp_path).inspect_nodes(limit=["n[1-2]"])
    out = {o.node: o for o in report.outcomes}
    assert out["n1"].status is Status.FAILED
    assert out["n1"].error == "no deploy ramdisk to boot for inspection: run `k1prov images register` first"
    assert (out["n2"].status, out["n2"].changes) == (Status.OK, ["inspect_interface"])
    assert ironic.node("n2").inspect_interface == "agent"
    assert actions(ironic) == {"n2": ["inspect"]}


def test_nodes_list_shows_the_inspected_hardware_and_the_properties_of_the_others(tmp_path, ironic):
    ironic.add("n1", provision_state="available", properties={"memory_mb": 8192, "cpus": 2})
    ironic.add("n2", provision_state="available", properties={"memory_mb": 1024})
    ironic.inventories["n1"] = inspected("52:54:00:00:00:01")
    out = {o.node: o.hardware for o in prov(tmp_path).list_nodes(limit=["n[1-2]"]).outcomes}
    assert out["n1"]["nics"] == [{"name": "eth0", "mac": "52:54:00:00:00:01", "ipv4": "10.0.9.9"}]
    assert out["n1"]["memory_mb"] == 8192
    assert out["n2"] == {"memory_mb": 1024}


def test_an_inspection_that_runs_out_of_time_is_aborted_not_left_in_inspect_wait(tmp_path, ironic):
    ironic.add("n1", provision_state="manageable", driver_info=dict(RAMDISK))
    ironic.never_reaches.add("n1")                   # its agent never calls back
    (row,) = prov(tmp_path, inspect=0.01).inspect_nodes(limit=["n1"]).outcomes
    assert row.status is Status.TIMEOUT
    assert row.error.startswith("inspect: not manageable after 0 s (the inspect timeout); "
                                "the inspection was aborted; the node is left in inspect failed")
    assert actions(ironic) == {"n1": ["inspect", "abort"]}
    assert row.provision_state == "inspect failed"


def test_an_inspect_request_ironic_refuses_leaves_the_node_where_it_was(tmp_path, ironic):
    from sdk_standin import http_error
    ironic.add("n1", provision_state="manageable", driver_info=dict(RAMDISK))
    ironic.fail_action[("n1", "inspect")] = http_error(400, "Cannot validate image information for node")
    (row,) = prov(tmp_path).inspect_nodes(limit=["n1"]).outcomes
    assert row.status is Status.FAILED and row.provision_state == "manageable"
    assert "Cannot validate image information" in row.error
    assert "inspect failed" not in row.error
