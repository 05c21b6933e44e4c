"""HostBooter checks and bookkeeping that need no root (booting is in tests/integration)."""
import pytest

from k1prov.errors import LabError
from k1prov.lab.hosts import HostBooter, HostConfig
from k1prov.lab.netns import LabNetwork

CONFIG = HostConfig(hostname="h1", address="10.251.0.11", prefix=24, gateway="10.251.0.1")


@pytest.mark.parametrize("name", ["", "UPPER", "a_b", "-lead", "x" * 33, "../etc"])
def test_bad_names_are_refused(tmp_path, name):
    booter = HostBooter(tmp_path)
    with pytest.raises(LabError, match="bad lab host name"):
        booter.boot(name, tmp_path / "image.raw", CONFIG)
    with pytest.raises(LabError, match="bad lab host name"):
        booter.stop(name)


def test_unknown_host_is_absent_and_list_is_empty(tmp_path):
    booter = HostBooter(tmp_path / "lab")
    assert booter.status("h1").state == "absent"
    assert booter.list() == []


def test_boot_needs_an_existing_image(tmp_path):
    # Checked before anything is created (the bridge is made, if missing, only after this).
    booter = HostBooter(tmp_path, network=LabNetwork(bridge="k1pnosuch0"))
    with pytest.raises(LabError, match="does not exist"):
        booter.boot("h1", tmp_path / "missing.raw", CONFIG)
    assert not LabNetwork(bridge="k1pnosuch0").exists()


def test_wipe_of_a_stopped_host_removes_its_writable_layer(tmp_path):
    booter = HostBooter(tmp_path)
    upper = tmp_path / "hosts/h1/upper/root"
    upper.mkdir(parents=True)
    (upper / "data").write_text("x")
    assert booter.status("h1").state == "stopped"
    booter.wipe("h1")
    assert not (tmp_path / "hosts/h1/upper").exists()
    assert booter.status("h1").state == "absent"


def test_an_unknown_init_is_refused(tmp_path):
    with pytest.raises(LabError, match="host init 'upstart'"):
        HostBooter(tmp_path, init="upstart")
    assert HostBooter(tmp_path, init="systemd").init == "systemd"


def test_the_lab_setting_host_init(tmp_path):
    from k1prov.errors import ConfigError
    from k1prov.lab import LabSettings

    assert LabSettings(root=tmp_path, venv=tmp_path).host_init == "systemd"
    assert LabSettings(root=tmp_path, venv=tmp_path, host_init="plain").host_init == "plain"
    with pytest.raises(ConfigError, match="host_init"):
        LabSettings(root=tmp_path, venv=tmp_path, host_init="upstart")


def test_a_systemd_host_gets_a_machine_id_once(tmp_path):
    from k1prov.lab.hosts import ensure_machine_id

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("")  # the image's: empty
    ensure_machine_id(tmp_path)
    first = (tmp_path / "etc/machine-id").read_text()
    assert len(first.strip()) == 32 and int(first, 16)
    ensure_machine_id(tmp_path)  # the next boot keeps it, as a disk does
    assert (tmp_path / "etc/machine-id").read_text() == first
