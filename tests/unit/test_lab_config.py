"""k1prov.lab.config: settings validation and the rendered service configuration."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from k1prov.errors import ConfigError
from k1prov.lab.config import LabSettings, render_glance_conf, render_ironic_conf, write_configs


def settings(tmp_path: Path, **kw) -> LabSettings:
    """A lab without auth unless the test names a mode (the default lab runs Keystone)."""
    kw.setdefault("auth", "none")
    return LabSettings(root=tmp_path / "lab", venv=tmp_path / "venv", **kw)


def parse(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    return cp


def test_default_reads_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("K1PROV_LAB_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("K1PROV_LAB_VENV", str(tmp_path / "v"))
    s = LabSettings.default()
    assert (s.root, s.venv) == (tmp_path / "r", tmp_path / "v")


def test_default_without_environment_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("K1PROV_LAB_DIR", raising=False)
    monkeypatch.delenv("K1PROV_LAB_VENV", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    s = LabSettings.default()
    assert s.root == tmp_path / ".local/share/k1prov/lab"
    assert s.venv == tmp_path / ".cache/k1prov/lab-venv"
    assert s.clouds_yaml_path == tmp_path / ".config/openstack/clouds.yaml"


@pytest.mark.parametrize("kw, word", [
    ({"nodes": 0}, "nodes"),
    ({"ironic_port": 70000}, "ironic_port"),
    ({"glance_port": 6385}, "must differ"),
    ({"bmc_base_port": 65530, "nodes": 10}, "65535"),
    ({"bmc_username": ""}, "bmc_username"),
    ({"dead_bmcs": (6230,)}, "dead_bmcs"),          # the first BMC: `lab up` asks it
    ({"dead_bmcs": (6235,)}, "dead_bmcs"),          # past the lab's 5
])
def test_bad_settings_are_refused(tmp_path, kw, word):
    with pytest.raises(ConfigError, match=word):
        settings(tmp_path, **kw)


def test_ironic_conf_has_the_lab_settings(tmp_path):
    s = settings(tmp_path, ironic_port=16385, glance_port=19292, http_port=18088)
    cp = parse(render_ironic_conf(s))
    assert cp["DEFAULT"]["auth_strategy"] == "noauth"
    assert cp["DEFAULT"]["rpc_transport"] == "none"
    assert cp["DEFAULT"]["enabled_hardware_types"] == "ipmi,redfish,fake-hardware"
    assert {"ipmitool", "redfish"} <= set(cp["DEFAULT"]["enabled_power_interfaces"].split(","))
    assert set(cp["DEFAULT"]["enabled_deploy_interfaces"].split(",")) == {"fake", "direct", "ramdisk"}
    assert "pxe" in cp["DEFAULT"]["enabled_boot_interfaces"].split(",")
    # On the bridge: the machines' agents call back to it.
    assert cp["api"]["host_ip"] == "10.251.0.1"
    assert cp["DEFAULT"]["my_ip"] == "10.251.0.1"
    assert cp["api"]["port"] == "16385"
    assert cp["database"]["connection"] == f"sqlite:///{s.root}/ironic.sqlite"
    assert cp["dhcp"]["dhcp_provider"] == "none"
    # Automated cleaning on (issue 21), metadata only, with the lab's stand-in deploy
    # images as the conductor's default (a node enrolled before `images register`).
    assert cp["conductor"]["automated_clean"] == "true"
    assert cp["deploy"]["erase_devices_priority"] == "0"
    assert cp["deploy"]["erase_devices_metadata_priority"] == "99"
    kernel, ramdisk = s.default_deploy_images
    assert cp["conductor"]["deploy_kernel"] == f"file://{kernel}"
    assert cp["conductor"]["deploy_ramdisk"] == f"file://{ramdisk}"
    assert str(s.root / "ironic") in cp["conductor"]["file_url_allowed_paths"].split(",")
    assert parse(render_ironic_conf(settings(tmp_path, automated_clean=False)))["conductor"][
        "automated_clean"] == "false"
    # A lab like an Ironic without default deploy images: each node's own driver_info only.
    bare = parse(render_ironic_conf(settings(tmp_path, conductor_deploy_images=False)))["conductor"]
    assert "deploy_kernel" not in bare and "deploy_ramdisk" not in bare
    assert cp["conductor"]["sync_power_state_interval"] == "-1"
    assert cp["ipmi"]["min_command_interval"] == "1"
    assert cp["glance"]["auth_type"] == "none"
    assert cp["glance"]["endpoint_override"] == "http://127.0.0.1:19292"
    assert cp["service_catalog"]["endpoint_override"] == "http://10.251.0.1:16385"
    assert cp["deploy"]["http_root"] == str(s.root / "http")
    assert cp["deploy"]["http_url"] == "http://10.251.0.1:18088"
    assert cp["pxe"]["tftp_root"] == str(s.tftp_root)
    assert cp["pxe"]["tftp_server"] == "10.251.0.1"
    assert cp["agent"]["image_download_source"] == "http"
    assert cp["agent"]["deploy_logs_collect"] == "always"
    assert cp["agent"]["deploy_logs_local_path"] == str(s.root / "deploy-logs")
    # Built-in agent inspection (nodes inspect), booted by Ironic through the node's ports;
    # a node without ports by the lab's PXE default (unmanaged: test_lab_inspect_ports).
    assert cp["DEFAULT"]["enabled_inspect_interfaces"].split(",")[0] == "agent"
    assert cp["inspector"]["require_managed_boot"] == "false"
    assert cp["inspector"]["hooks"] == "$default_hooks,memory,cpus,root-device"
    assert cp["auto_discovery"]["enabled"] == "false"


def test_flaky_bmcs_give_ironic_the_settings_of_a_site_with_slow_bmcs(tmp_path):
    text = render_ironic_conf(settings(tmp_path, flaky_bmcs=("6231:0.3:1.5",)))
    # One line per error (a MultiStrOpt of oslo.config; configparser keeps the last).
    assert "additional_retryable_ipmi_errors = Unable to establish IPMI v2 / RMCP+ session\n" in text
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.read_string(text)
    # A per-packet timeout above the BMC's 1.5 s, ipmitool's own retries, and a failed
    # session set-up re-run by Ironic.
    assert cp["ipmi"]["min_command_interval"] == "3"
    assert cp["ipmi"]["use_ipmitool_retries"] == "true"
    assert int(cp["ipmi"]["command_retry_timeout"]) > 60
    assert int(cp["conductor"]["power_state_change_timeout"]) > 60
    assert cp["conductor"]["automated_clean"] == "true"
    healthy = parse(render_ironic_conf(settings(tmp_path)))
    assert dict(healthy["ipmi"]) == {**dict(healthy["DEFAULT"]), "min_command_interval": "1"}
    assert "power_state_change_timeout" not in healthy["conductor"]


def test_bridge_and_subnet_are_settings(tmp_path):
    s = settings(tmp_path, bridge="k1pipa0", cidr="10.253.0.1/24", ironic_port=36385)
    assert s.ironic_url == "http://10.253.0.1:36385"
    assert parse(render_ironic_conf(s))["api"]["host_ip"] == "10.253.0.1"
    for bad in ({"bridge": "x" * 16}, {"cidr": "10.253.0.0/24"}, {"cidr": "10.253.0.1/30"},
                {"cidr": "nonsense"}, {"disk_gb": 0}):
        with pytest.raises(ConfigError):
            settings(tmp_path, **bad)


def test_every_enabled_interface_family_has_a_fake_or_noop(tmp_path):
    cp = parse(render_ironic_conf(settings(tmp_path)))
    families = [k for k in cp["DEFAULT"] if k.startswith("enabled_") and k.endswith("_interfaces")]
    assert len(families) == 13
    for key in families:
        values = cp["DEFAULT"][key].split(",")
        assert "fake" in values or "noop" in values, key


def test_glance_conf_keeps_everything_under_root(tmp_path):
    s = settings(tmp_path)
    cp = parse(render_glance_conf(s))
    assert cp["database"]["connection"] == f"sqlite:///{s.root}/glance.sqlite"
    for section in ("local", "os_glance_staging_store", "os_glance_tasks_store"):
        assert cp[section]["filesystem_store_datadir"].startswith(str(s.root) + "/")
    assert cp["paste_deploy"]["config_file"] == str(s.glance_conf_dir / "glance-api-paste.ini")


def test_write_configs_writes_files_once(tmp_path):
    s = settings(tmp_path)
    write_configs(s)
    policy = s.glance_conf_dir / "policy.yaml"
    paste = parse((s.glance_conf_dir / "glance-api-paste.ini").read_text())
    assert "unauthenticated-context" in paste["composite:api"]["default"].split()
    assert '"publicize_image": ""' in policy.read_text()
    before = {p: p.stat().st_mtime_ns for p in s.etc_dir.rglob("*") if p.is_file()}
    assert len(before) == 5  # + ironic-policy.yaml
    write_configs(s)
    after = {p: p.stat().st_mtime_ns for p in s.etc_dir.rglob("*") if p.is_file()}
    assert after == before
    for d in (s.log_dir, s.run_dir, s.http_dir, s.bmc_state_dir):
        assert d.is_dir()
    # The conductor's default deploy images (automated cleaning before `images register`).
    assert all(p.is_file() for p in s.default_deploy_images)


# ---------------------------------------------------------------- auth modes


def test_auth_mode_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="auth"):
        settings(tmp_path, auth="kerberos")
    with pytest.raises(ConfigError, match="must differ"):
        settings(tmp_path, keystone_port=6385)
    with pytest.raises(ConfigError, match="token_expiration"):
        settings(tmp_path, token_expiration=5)


def test_http_basic_ironic_reads_its_htpasswd_file_and_glance_stays_open(tmp_path):
    from k1prov.lab.config import GLANCE_POLICY, rendered_files

    s = settings(tmp_path, auth="http_basic")
    cp = parse(render_ironic_conf(s))
    assert cp["DEFAULT"]["auth_strategy"] == "http_basic"
    assert cp["DEFAULT"]["http_basic_auth_user_file"] == str(s.ironic_htpasswd)
    assert cp["glance"]["auth_type"] == "none"
    files = rendered_files(s)
    assert "unauthenticated-context rootapp" in files[s.glance_conf_dir / "glance-api-paste.ini"]
    assert files[s.glance_conf_dir / "policy.yaml"] == GLANCE_POLICY
    assert s.keystone_conf not in files


def test_keystone_ironic_and_glance_check_tokens_with_their_service_users(tmp_path):
    from k1prov.lab.config import rendered_files

    s = settings(tmp_path, auth="keystone", keystone_port=15000, token_expiration=30)
    files = rendered_files(s, service_password="svc-secret")
    ironic = parse(files[s.ironic_conf])
    assert ironic["DEFAULT"]["auth_strategy"] == "keystone"
    for section in ("keystone_authtoken", "glance"):
        assert ironic[section]["auth_url"] == "http://127.0.0.1:15000/v3"
        assert ironic[section]["username"] == "ironic"
        assert ironic[section]["password"] == "svc-secret"
        assert ironic[section]["project_name"] == "service"
    # Legacy rules: a project-scoped admin may enroll (see config._IRONIC_KEYSTONE_POLICY).
    assert ironic["oslo_policy"]["enforce_new_defaults"] == "false"
    glance = parse(files[s.glance_conf_dir / "glance-api.conf"])
    assert glance["keystone_authtoken"]["username"] == "glance"
    paste = parse(files[s.glance_conf_dir / "glance-api-paste.ini"])
    assert paste["composite:api"]["default"].split()[-3:] == ["authtoken", "context", "rootapp"]
    assert "keystonemiddleware" in paste["filter:authtoken"]["paste.filter_factory"]
    assert files[s.glance_conf_dir / "policy.yaml"] == "{}\n"
    keystone = parse(files[s.keystone_conf])
    assert keystone["token"]["provider"] == "fernet"
    assert keystone["token"]["expiration"] == "30"
    assert keystone["database"]["connection"] == f"sqlite:///{s.root / 'keystone.sqlite'}"


def test_configs_are_private_and_keystone_keys_its_own(tmp_path):
    s = settings(tmp_path, auth="keystone")
    write_configs(s, service_password="svc-secret")
    for path in (s.ironic_conf, s.glance_conf_dir / "glance-api.conf", s.keystone_conf):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (s.keystone_keys_dir / "fernet-keys").stat().st_mode & 0o777 == 0o700


def test_keystone_ironic_policy_lets_the_project_admin_set_shards(tmp_path):
    import yaml

    from k1prov.lab.config import render_ironic_policy

    policy = yaml.safe_load(render_ironic_policy(settings(tmp_path, auth="keystone")))
    assert policy["baremetal:node:update:shard"] == "role:admin"
    assert yaml.safe_load(render_ironic_policy(settings(tmp_path))) == {}


@pytest.mark.parametrize("kw, word", [
    ({"conductors": 9}, "conductors"),
    ({"conductors": 2, "conductor_groups": ("a",)}, "one per conductor"),
    ({"conductors": 1, "conductor_groups": ("A b",)}, "not a conductor group"),
    ({"conductors": 2, "ironic_port": 200}, "256"),
    ({"conductors": 2, "mariadb_port": 6385}, "must differ"),
    ({"conductors": 2, "conductor_heartbeat_timeout": 3}, "heartbeat"),
])
def test_bad_conductor_settings_are_refused(tmp_path, kw, word):
    with pytest.raises(ConfigError, match=word):
        settings(tmp_path, **kw)


def test_all_in_one_ironic_is_the_default(tmp_path):
    s = settings(tmp_path)
    cp = parse(render_ironic_conf(s))
    assert s.conductors == 0
    assert cp["DEFAULT"]["rpc_transport"] == "none"
    assert cp["database"]["connection"].startswith("sqlite:///")
    assert not cp.has_section("json_rpc")


def test_conductors_share_mariadb_and_talk_json_rpc(tmp_path):
    from k1prov.lab.config import render_conductor_conf, rendered_files

    s = settings(tmp_path, conductors=2, conductor_groups=("ga", "gb"), mariadb_port=13306,
                 ironic_port=16385, conductor_heartbeat_timeout=20)
    cp = parse(render_ironic_conf(s, db_password="pw"))
    assert cp["DEFAULT"]["rpc_transport"] == "json-rpc"
    assert cp["database"]["connection"] == "mysql+pymysql://ironic:pw@127.0.0.1:13306/ironic?charset=utf8"
    assert cp["json_rpc"]["auth_strategy"] == "noauth"
    assert cp["conductor"]["heartbeat_timeout"] == "20"
    assert int(cp["conductor"]["heartbeat_interval"]) < 20
    assert cp["json_rpc"]["port"] == "8089"
    for i, group in enumerate(("ga", "gb"), start=1):
        own = parse(render_conductor_conf(s, i))
        assert own["conductor"]["conductor_group"] == group
        # Its own address on Ironic's default port: Ironic registers it as that address,
        # the name it reserves nodes with (with another port it would register "host:port").
        assert s.conductor_host(i) == f"127.64.1.{i}"   # 16385 = 64 * 256 + 1
        assert own["DEFAULT"]["host"] == own["json_rpc"]["host_ip"] == s.conductor_host(i)
        assert "port" not in own["json_rpc"]
        assert s.conductor_conf(i) in rendered_files(s, db_password="pw")
        # Image caches and HTTP staging of its own (shared caches break each other's links).
        assert f"conductor-{i}" in own["pxe"]["instance_master_path"]
        assert own["deploy"]["http_url"].endswith(f"/conductor-{i}")
    # Without groups every conductor is in the default group "" (nodes without one).
    assert parse(render_conductor_conf(settings(tmp_path, conductors=1), 1))["conductor"]["conductor_group"] == ""


def test_keystone_auth_keeps_json_rpc_on_loopback_without_tokens(tmp_path):
    s = settings(tmp_path, conductors=1, auth="keystone")
    cp = parse(render_ironic_conf(s, service_password="sp", db_password="pw"))
    assert cp["DEFAULT"]["auth_strategy"] == "keystone"
    assert cp["json_rpc"]["auth_strategy"] == "noauth" and cp["json_rpc"]["auth_type"] == "none"
