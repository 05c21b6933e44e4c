"""Lab network naming and addressing (no namespaces created here)."""
import pytest

from k1prov.errors import LabError
from k1prov.lab.netns import LabNetwork, netns_name, veth_name


def test_host_addresses_follow_the_gateway():
    net = LabNetwork(cidr="10.251.0.1/24")
    assert (net.gateway, net.prefix) == ("10.251.0.1", 24)
    assert net.host_address(1) == "10.251.0.2"
    assert net.host_address(253) == "10.251.0.254"
    with pytest.raises(LabError):
        net.host_address(254)  # the broadcast address


def test_bad_network_settings_are_lab_errors():
    with pytest.raises(LabError):
        LabNetwork(bridge="a-bridge-name-too-long")
    with pytest.raises(LabError):
        LabNetwork(cidr="10.251.0.1/33")


def test_interface_names_fit_the_kernel_limit_and_differ():
    names = {veth_name(f"worker-{i:04d}-of-a-very-long-cluster-name") for i in range(500)}
    assert len(names) == 500
    assert all(len(n) <= 15 for n in names)
    assert netns_name("zk1") == "k1p-zk1"


def test_mac_addresses_are_stable_local_unicast_and_differ():
    from k1prov.lab.netns import mac_address

    assert mac_address("zk1") == mac_address("zk1") != mac_address("zk2")
    first = int(mac_address("zk1").split(":")[0], 16)
    assert first & 0x02 and not first & 0x01
