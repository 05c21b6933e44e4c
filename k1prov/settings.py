"""Named, finite timeouts and limits, in one place.

A function takes the one timeout it needs as a keyword-only argument; the CLI
fills them from here (and from options that override them).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Every timeout k1prov has, by name, each finite; a function takes the one it needs
    (STYLE.md §5). Errors name the one that ran out, so the operator knows which to raise."""

    # One HTTP request to Ironic or Glance (the SDK's own retries happen inside it).
    api_request: float = 60.0
    # Logging in to a BMC with changed credentials before Ironic gets them (k1prov.bmc_login).
    bmc_login: float = 60.0
    # enroll -> manageable: Ironic checks the BMC credentials over IPMI (retries inside Ironic).
    manage: float = 300.0
    # manageable -> available: with automated cleaning (Ironic's default, the lab's too)
    # the deploy ramdisk boots and erases the disks first (long where it erases every byte).
    provide: float = 1800.0
    # Manual cleaning (nodes clean): the deploy ramdisk boots and erases the disks; a
    # full erase of large disks takes hours, so raise it for `--erase full`.
    clean: float = 1800.0
    # Inspection (nodes inspect): the agent boots, reports the hardware, Ironic powers the
    # node off (a real server's POST alone can take minutes).
    inspect: float = 1200.0
    # available -> active, including the image write and the first boot.
    deploy: float = 3600.0
    # active -> available, automated cleaning included.
    undeploy: float = 1800.0
    # One power action through Ironic (it reads the BMC, acts, and reads it again).
    power: float = 180.0
    # Upload of one image to Glance.
    image_upload: float = 3600.0
    # TCP + SSH handshake with one host.
    ssh_connect: float = 10.0
    # One remote command or script.
    ssh_command: float = 1800.0
    # A remote command k1prov gives up on (its timeout, the run's deadline, Ctrl-C) gets
    # SIGTERM; what is still running this long after gets SIGKILL (k1prov.ssh).
    ssh_kill_grace: float = 2.0
    # A host that stops answering while a command runs on it (powered off, its cable out:
    # no FIN or RST ever comes): after this long without a word from it, keepalives
    # included (one every third of it, as OpenSSH's ServerAliveInterval x CountMax 3), the
    # command counts as lost, instead of waiting out ssh_command.
    ssh_alive: float = 45.0
    # Waiting for sshd on a freshly deployed host.
    ssh_ready: float = 600.0
    # A read-only look at one host in one SSH session (recorded script hashes, service
    # states, the answers of the health checks), after the connection is up.
    ssh_probe: float = 30.0
    # A service's health check (ZooKeeper quorum, Spark workers registered, ...): how long a
    # gate between configure's phases waits for it to pass.
    health: float = 300.0
    # The final health verdict of a cluster verb (up, rebuild, status): how long an unhealthy
    # sample is looked at again before it counts (right after a rolling restart a ZooKeeper
    # election may be under way; under load it takes longer).
    health_verdict: float = 120.0
    # configure restarting the running members of an ensemble one at a time (ZooKeeper,
    # Mesos masters, when their script changed): how long it waits for the restarted
    # member to be back in its ensemble, with a leader elected, before the next one.
    rolling_restart: float = 300.0
    # Starting or stopping one lab service.
    lab_service: float = 60.0
    # Installing the lab's virtualenv (pip downloads ironic, glance and their dependencies).
    lab_install: float = 1800.0
    # Building the lab's user image (debootstrap, packages, pyspark wheels, mkfs).
    lab_image_build: float = 1800.0
    # Waiting to take the cluster's lock held by another run (0: fail at once).
    lock: float = 0.0


DEFAULT_TIMEOUTS = Timeouts()

# Hard ceiling of the fan-out engine, whatever the climber or the operator asks for.
MAX_CONCURRENCY = 256
# Ironic's embedded API server resets connections at 32+ concurrent clients; stay below it.
IRONIC_MAX_CONCURRENCY = 24
# Tries of one Ironic request that failed transiently (503 "no free conductor workers",
# a reset connection) and the first wait between them (doubling, up to 8 s): the item's
# timeout (3 x api_request) ends them first. A full conductor pool can take minutes to
# take work again (README, Design); meanwhile the climber lowers the concurrency.
IRONIC_RETRIES = 30
IRONIC_RETRY_WAIT = 1.0
# Seconds between two looks at Ironic while waiting for provision states (openstacksdk's own).
IRONIC_POLL_INTERVAL = 2.0
# ... or this many times what the last look took, when more: a listing that Ironic is slow
# to answer (many nodes, a busy all-in-one Ironic whose API shares its process with the
# conductor) then takes at most 1/(1 + this) of the wait's time instead of most of it.
# Measured (benchmarks/profile_cluster_up.py, 50 lab nodes, load ~40): a 50-node listing
# took 0.76 s in Ironic plus 0.5 s in k1prov, so 2 s apart the deploy wait spent ~40% of
# its time inside polls.
IRONIC_POLL_COST_RATIO = 4.0
# Nodes per page when a wait lists Ironic's nodes (Ironic's default [api]max_limit).
IRONIC_LIST_PAGE = 1000
# enroll: manage again a node whose BMC check failed because the BMC did not answer Ironic
# (ironic_states.bmc_did_not_answer: a slow or lossy BMC often answers the next check).
# Ironic words a wrong password the same way, so each retry costs such a node one more of
# Ironic's checks (about [ipmi]command_retry_timeout, 60 s by default) before its row fails.
MANAGE_RETRIES = 1
# Share of items that may fail before a run stops starting new work.
DEFAULT_FAILURE_BUDGET = 0.5
# SSH fan-out from one machine: unbounded to 200 hosts took ~70 s in the lab, capped at
# 64 ~24 s (LAB-NOTES); the climber stays under this unless the operator asks for more.
SSH_MAX_CONCURRENCY = 64
# Connection attempts per host for transient failures (refused, reset, banner timeout).
SSH_RETRIES = 2
# How long the fan-out engine waits for an SSH item it gave up on (timeout, deadline,
# Ctrl-C) to end its remote command and report how that went: the kill grace plus a
# round trip on a loaded machine (k1prov.ssh, Policy.cancel_wait/cancel_grace).
SSH_GIVE_UP_WAIT = DEFAULT_TIMEOUTS.ssh_kill_grace + 5.0
