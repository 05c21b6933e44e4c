"""Unit tests contact no BMC: enroll's login try (k1prov.bmc_login, ipmitool over the
network) is recorded instead. The real try is tested against the lab's BMC simulators
(tests/integration/test_enroll.py)."""
from __future__ import annotations

import pytest

import k1prov.enrollment


@pytest.fixture(autouse=True)
def bmc_logins(monkeypatch) -> list[str]:
    """The nodes whose changed BMC login enroll tried, in order."""
    tried: list[str] = []
    monkeypatch.setattr(k1prov.enrollment, "try_login", lambda node, *, timeout: tried.append(node.name))
    return tried


@pytest.fixture(autouse=True)
def no_lab_clouds_yaml(monkeypatch) -> None:
    """Unit tests read no lab's clouds.yaml: in a whole run the integration session's lab
    (Keystone) points OS_CLIENT_CONFIG_FILE at its own until the session ends."""
    monkeypatch.delenv("OS_CLIENT_CONFIG_FILE", raising=False)
