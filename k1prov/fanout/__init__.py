"""Transport-agnostic fan-out with adaptive concurrency (see DESIGN.md)."""
from k1prov.fanout.cancel import CancelToken, current_cancel
from k1prov.fanout.engine import default_is_transient, run_fanout
from k1prov.fanout.events import EventSink, NullSink
from k1prov.fanout.hostlist import expand_hosts, fold_hosts
from k1prov.fanout.policy import Policy
from k1prov.fanout.results import Partition, Report, Result, Status

__all__ = ["run_fanout", "Policy", "Result", "Report", "Status", "EventSink", "NullSink",
           "Partition", "fold_hosts", "expand_hosts", "default_is_transient", "CancelToken", "current_cancel"]
