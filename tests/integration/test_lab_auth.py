"""The lab with authentication on, as sites run Ironic and Glance: Ironic's own http_basic
(a standalone Ironic: Bifrost, Metal3), then Keystone for both.

One lab for the module (one machine, ports shifted from the session lab's, on the session
lab's bridge), brought up first with `auth="http_basic"`, then again with
`auth="keystone"` (Ironic and Glance restart, Keystone starts, the machine stays). In each
mode, in order:
- a request without credentials (or with a wrong password) is refused from this machine;
- the lab's clouds.yaml entry (0600) works for openstacksdk and the CLIs operators use;
- k1prov with a wrong password: one line naming the service and what it refused, exit 1;
- k1prov enrolls, registers images and deploys one node through the entry: the agent's
  lookup and heartbeat still work without credentials; from the deployed host's network
  namespace, Ironic's node and port APIs answer 401 and Glance (and Keystone) cannot be
  reached at all;
- the password appears in no output (with --debug), run record or service log.
With Keystone, tokens live TOKEN_EXPIRATION seconds and the deploy outlives several of
them: keystoneauth takes new ones on its own and the run never notices.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openstack
import pytest
import yaml
from image_fixture import lab_image_path
from lab_fixture import beside_session_lab, bring_up
from labhosts import deploy_settings_text, lab_inventory_text, lab_ip, node_range_text, write_deploy_inputs

from k1prov import glance
from k1prov.lab import Lab
from k1prov.lab.machine import machine_mac, machine_name
from k1prov.lab.netns import netns_name

pytestmark = pytest.mark.lab

# Ports: the session lab's offset plus this (no port of either lab meets the other's).
PORT_SHIFT = 300
CLUSTER = "authtest"
NODE = "auth01"
# The host's address: .121, which no other test uses.
ADDRESS = 121
# Keystone's token lifetime in the keystone part: the shortest the lab allows, so that even a
# quick deploy (36 s on a quiet machine) outlives several of them.
TOKEN_EXPIRATION = 10
# One k1prov command (a deploy of one node included) on a loaded machine.
COMMAND_TIMEOUT = 900
HTTP_TIMEOUT = 10
K1PROV = Path(sys.executable).with_name("k1prov")
BAREMETAL = Path(sys.executable).with_name("baremetal")

# Run in the deployed host's network namespace (this machine's python): the status of a
# GET on each URL, or the error when nothing answers.
PROBE = r"""
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
out = {}
for url in sys.argv[1:]:
    try:
        with opener.open(url, timeout=5) as r:
            out[url] = r.status
    except urllib.error.HTTPError as e:
        out[url] = e.code
    except OSError as e:
        out[url] = type(getattr(e, "reason", e)).__name__
print(json.dumps(out))
"""


def _status(url: str, *, user: str | None = None, password: str | None = None,
            token: str | None = None) -> int:
    req = urllib.request.Request(url)
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if token is not None:
        req.add_header("X-Auth-Token", token)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def auth_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("labauth")
    s = beside_session_lab(root, shift=PORT_SHIFT, auth="http_basic", token_expiration=TOKEN_EXPIRATION)
    lab = Lab(s)
    t0 = time.monotonic()
    bring_up(lab)
    print(f"\nlab up --auth http_basic: {time.monotonic() - t0:.1f} s")
    d = root / "work"
    d.mkdir()
    write_deploy_inputs(d, key_comment=CLUSTER)
    inv = d / "inventory.yaml"
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, cloud=s.cloud_name,
        nodes=node_range_text(NODE, first_bmc_port=s.bmc_base_port, first_address=lab_ip(s, ADDRESS)),
        deploy=deploy_settings_text(d, image_prefix="auth", user_image=str(lab_image_path()))))
    saved = os.environ.get("OS_CLIENT_CONFIG_FILE")
    # In-process SDK calls (clean-up) read the lab's entry, as k1prov's commands do.
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(s.clouds_yaml_path)
    env = {"lab": lab, "dir": d, "inv": inv, "outputs": []}
    try:
        yield env
    finally:
        _clean_up(env)
        env["lab"].down()
        if saved is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = saved


def _clean_up(env) -> None:
    """The node and the images go (whatever mode the lab is in now)."""
    _k1prov(env, "undeploy", check=False)
    _k1prov(env, "nodes", "delete", check=False)
    conn = openstack.connect(cloud=env["lab"].settings.cloud_name)
    for img in glance.list_own_images(conn, CLUSTER):
        conn.image.delete_image(img.id, ignore_missing=True)


def _k1prov(env, *args: str, clouds_yaml: Path | None = None, check: bool = True,
            debug: bool = False) -> subprocess.CompletedProcess:
    """k1prov as an operator runs it, with the lab's clouds.yaml (or another) and --json;
    every output is kept for the password checks."""
    s = env["lab"].settings
    cmd = [str(K1PROV), *(["--debug"] if debug else []), *args, "-i", str(env["inv"]), "--json"]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    run_env.update(OS_CLIENT_CONFIG_FILE=str(clouds_yaml or s.clouds_yaml_path),
                   K1PROV_STATE_DIR=str(env["dir"] / "state"))
    res = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    env["outputs"].append(res.stdout + res.stderr)
    if check:
        assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-4000:])
    return res


def _bad_clouds_yaml(env, name: str) -> Path:
    """The lab's clouds.yaml with a wrong password."""
    s = env["lab"].settings
    data = yaml.safe_load(s.clouds_yaml_path.read_text())
    data["clouds"][s.cloud_name]["auth"]["password"] = "not-the-password"
    path = env["dir"] / name
    path.write_text(yaml.safe_dump(data))
    return path


def _cli_env(s) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(s.clouds_yaml_path)
    return env


def _assert_refused_in_one_line(env, service: str, url: str) -> None:
    res = _k1prov(env, "nodes", "list", clouds_yaml=_bad_clouds_yaml(env, "bad-clouds.yaml"), check=False)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: {service} at {url}"), res.stderr
    assert "refused the credentials (HTTP 401" in lines[0]
    assert "not-the-password" not in res.stdout + res.stderr
    assert res.stdout == ""


def _deploy_and_probe_from_the_host(env) -> dict:
    """Enroll, register, deploy the node; then what its host reaches on the bridge."""
    s = env["lab"].settings
    for args in (("nodes", "enroll"), ("images", "register")):
        _k1prov(env, *args)
    t0 = time.monotonic()
    res = _k1prov(env, "deploy", debug=True)
    took = time.monotonic() - t0
    row = next(r for r in json.loads(res.stdout)["nodes"] if r["node"] == NODE)
    assert row["status"] == "ok" and row["provision_state"] == "active", row
    mac = machine_mac(s.bmc_base_port)
    urls = [f"{s.ironic_url}/v1/nodes", f"{s.ironic_url}/v1/ports", f"{s.ironic_url}/v1",
            f"{s.ironic_url}/v1/lookup?addresses={mac}",
            f"{s.glance_url}/v2/images", f"http://{s.gateway}:{s.glance_port}/v2/images",
            f"{s.keystone_url}/v3", f"http://{s.gateway}:{s.keystone_port}/v3"]
    probe = subprocess.run(["ip", "netns", "exec", netns_name(machine_name(s.bmc_base_port)),
                            "/usr/bin/python3", "-I", "-c", PROBE, *urls],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    print(f"\ndeploy with auth {s.auth}: {took:.1f} s; from the host: {seen}")
    # Nodes and ports (BMC addresses and users): refused without credentials.
    assert seen[urls[0]] == 401 and seen[urls[1]] == 401, seen
    # Version discovery and the agent's lookup stay open (the deploy just used them).
    assert seen[urls[2]] == 200, seen
    assert seen[urls[3]] != 401, seen
    # Glance and Keystone listen on this machine's loopback only: nothing there for the host.
    for url in urls[4:]:
        assert not isinstance(seen[url], int), (url, seen)
    return {"seconds": took}


def _assert_no_password_anywhere(env, password: str, *others: str) -> None:
    """Neither the password (nor its http_basic header) nor `others` (the service users'
    password) is in k1prov's outputs, its state directory or the services' logs."""
    s = env["lab"].settings
    secrets_ = {password, base64.b64encode(f"k1prov:{password}".encode()).decode(), *others}
    for text in env["outputs"]:
        assert not any(p in text for p in secrets_)
    places = [env["dir"] / "state", s.log_dir, s.root / "deploy-logs"]
    for place in places:
        for path in place.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(p.encode() in data for p in secrets_), path


# ---------------------------------------------------------------- http_basic


def _lists_with_the_entry(s, *argvs: list[str]) -> None:
    """Each client command (the operator's CLIs) lists through the lab's clouds.yaml entry."""
    for argv in argvs:
        out = subprocess.run(argv, env=_cli_env(s), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert isinstance(json.loads(out.stdout), list)


def test_http_basic_refuses_requests_without_the_password(auth_lab):
    lab = auth_lab["lab"]
    s = lab.settings
    password = lab.cloud_password()
    for path in ("/v1/nodes", "/v1/ports"):
        assert _status(s.ironic_url + path) == 401
        assert _status(s.ironic_url + path, user="k1prov", password="not-the-password") == 401
        assert _status(s.ironic_url + path, user="k1prov", password=password) == 200
    # Glance has no http_basic: in this mode it answers on loopback only (README).
    assert _status(s.glance_url + "/v2/images") == 200
    for path in (s.clouds_yaml_path, s.cloud_password_file, s.ironic_htpasswd, s.ironic_conf):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert password not in s.ironic_htpasswd.read_text()


def test_http_basic_entry_works_for_the_sdk_and_the_baremetal_cli(auth_lab):
    s = auth_lab["lab"].settings
    entry = yaml.safe_load(s.clouds_yaml_path.read_text())
    assert entry["clouds"][s.cloud_name]["auth_type"] == "http_basic"
    conn = openstack.connect(cloud=s.cloud_name)
    assert isinstance(list(conn.baremetal.nodes()), list)
    _lists_with_the_entry(s, [str(BAREMETAL), "--os-cloud", s.cloud_name, "node", "list", "-f", "json"],
                          [str(s.venv / "bin" / "openstack"), "--os-cloud", s.cloud_name,
                           "baremetal", "node", "list", "-f", "json"])


def test_http_basic_wrong_password_is_one_line_naming_ironic(auth_lab):
    _assert_refused_in_one_line(auth_lab, "Ironic", auth_lab["lab"].settings.ironic_url)


def test_http_basic_deploy_then_the_host_is_refused_by_ironic(auth_lab):
    _deploy_and_probe_from_the_host(auth_lab)
    _assert_no_password_anywhere(auth_lab, auth_lab["lab"].cloud_password())
    _clean_up(auth_lab)


# ---------------------------------------------------------------- keystone


@pytest.fixture(scope="module")
def keystone_lab(auth_lab):
    """The same lab, brought up again with Keystone."""
    lab = Lab(dataclasses.replace(auth_lab["lab"].settings, auth="keystone"))
    t0 = time.monotonic()
    bring_up(lab)
    print(f"\nlab up --auth keystone (from http_basic): {time.monotonic() - t0:.1f} s")
    auth_lab["lab"] = lab
    return auth_lab


def _token(s, password: str) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
    req = urllib.request.Request(s.keystone_url + "/v3/auth/tokens", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=HTTP_TIMEOUT) as resp:
        return resp.headers["X-Subject-Token"]


def test_keystone_refuses_requests_without_a_token(keystone_lab):
    lab = keystone_lab["lab"]
    s = lab.settings
    assert [sv.name for sv in lab.status().services if sv.name == "keystone"] == ["keystone"]
    token = _token(s, lab.cloud_password())
    for url in (s.ironic_url + "/v1/nodes", s.ironic_url + "/v1/ports", s.glance_url + "/v2/images"):
        assert _status(url) == 401, url
        assert _status(url, token="not-a-token") == 401, url
        assert _status(url, token=token) == 200, url
    for path in (s.clouds_yaml_path, s.cloud_password_file, s.service_password_file, s.ironic_conf,
                 s.glance_conf_dir / "glance-api.conf", s.keystone_conf):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_keystone_entry_works_for_openstack_and_baremetal_clis(keystone_lab):
    s = keystone_lab["lab"].settings
    _lists_with_the_entry(s, [str(s.venv / "bin" / "openstack"), "--os-cloud", s.cloud_name,
                              "image", "list", "-f", "json"],
                          [str(BAREMETAL), "--os-cloud", s.cloud_name, "node", "list", "-f", "json"])


def test_keystone_wrong_password_is_one_line_naming_keystone(keystone_lab):
    _assert_refused_in_one_line(keystone_lab, "Keystone", keystone_lab["lab"].settings.keystone_url)


def test_keystone_deploy_outlives_its_tokens_and_the_host_is_refused(keystone_lab):
    lab = keystone_lab["lab"]
    log = lab.settings.log_dir / "keystone.log"
    before = log.read_text().count("POST /v3/auth/tokens")
    result = _deploy_and_probe_from_the_host(keystone_lab)
    tokens = log.read_text().count("POST /v3/auth/tokens") - before
    print(f"keystone: {tokens} tokens issued while k1prov enrolled, registered and deployed "
          f"(token lifetime {TOKEN_EXPIRATION} s, deploy {result['seconds']:.0f} s)")
    # The deploy alone outlived at least one token, and nothing failed: keystoneauth renewed
    # them. (Not "two lifetimes": a quiet machine deploys in 36 s, and that is not a failure.)
    assert result["seconds"] > TOKEN_EXPIRATION
    assert tokens > 2
    _assert_no_password_anywhere(keystone_lab, lab.cloud_password(),
                                 lab.settings.service_password_file.read_text().strip())
