"""The k1prov lab: real Ironic and Glance, IPMI BMC simulators and test hosts on one machine.

`Lab(LabSettings.default()).up()` starts the services; nothing in the provisioning path
knows it talks to a lab.
"""
from k1prov.lab.config import LabSettings
from k1prov.lab.lab import Lab, LabStatus, ServiceStatus

__all__ = ["Lab", "LabSettings", "LabStatus", "ServiceStatus"]
