"""Test-wide isolation: no test reads the user's clouds.yaml, ~/.ssh/config or k1prov state.

The caches that are expensive to rebuild (the lab's virtualenv, the lab image) are
pinned to the real user's cache directories before HOME is redirected, so tests
reuse them; everything else lives under a per-session temporary directory.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

_REAL_HOME = Path(os.path.expanduser("~"))
os.environ.setdefault("K1PROV_LAB_VENV", str(_REAL_HOME / ".cache" / "k1prov" / "lab-venv"))
os.environ.setdefault("K1PROV_IMAGE_CACHE", str(_REAL_HOME / ".cache" / "k1prov" / "images"))


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("HOME", "OS_CLIENT_CONFIG_FILE", "OS_CLOUD",
                                             "K1PROV_STATE_DIR", "K1PROV_LAB_DIR", "SSH_AUTH_SOCK",
                                             "K1PROV_HOSTS_FILE")}
    os.environ["HOME"] = str(home)
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(home / "clouds.yaml")
    os.environ["K1PROV_STATE_DIR"] = str(home / "state")
    os.environ["K1PROV_LAB_DIR"] = str(home / "lab")
    # Role scripts run locally by the unit tests write their cluster's names here, never
    # into this machine's /etc/hosts (templates/common/base.sh.j2, k1_cluster_hosts).
    os.environ["K1PROV_HOSTS_FILE"] = str(home / "hosts")
    os.environ.pop("OS_CLOUD", None)
    os.environ.pop("SSH_AUTH_SOCK", None)
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# The sha512 the lab_operator_key fixture's stand-in SHA512SUMS gives the lab's Mesos build.
LAB_BUILD_SHA512 = "ab" * 64


@pytest.fixture
def lab_operator_key(isolated_home):
    """inventories/lab.yaml reads the public key `k1prov lab up` makes; tests that load it
    get a stand-in in the isolated HOME (never the operator's real key)."""
    pub = Path("~/.local/share/k1prov/lab/ssh/id_ed25519.pub").expanduser()
    pub.parent.mkdir(parents=True, exist_ok=True)
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheInventoryCheckOnly0000000 k1prov-lab\n")
    # inventories/lab-vm.yaml reads the one `lab up --kind vm` makes.
    vm_pub = Path("~/.local/share/k1prov/lab-vm/ssh/id_ed25519.pub").expanduser()
    vm_pub.parent.mkdir(parents=True, exist_ok=True)
    vm_pub.write_text(pub.read_text())
    # And the checksum file `lab up` writes beside the Mesos build it publishes (lab.yaml
    # reads roles.mesos.sha512 from it when rendering).
    sums = Path("~/.local/share/k1prov/lab/http/mesos/SHA512SUMS").expanduser()
    sums.parent.mkdir(parents=True, exist_ok=True)
    sums.write_text(f"{LAB_BUILD_SHA512}  mesos-test.tar.xz\n{LAB_BUILD_SHA512}  lab-build\n")
    return pub
