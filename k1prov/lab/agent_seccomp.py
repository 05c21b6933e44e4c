"""The lab agent's seccomp filter, and the launcher that applies it before the agent runs.

    /usr/bin/python3 -I agent_seccomp.py COMMAND [ARG...]

loads the filter into this process and execs COMMAND, which (and everything it starts)
keeps it for good. The agent runs as root with CAP_SYS_ADMIN (parted and partprobe need
it for BLKPG/BLKRRPART on the machine's own disk), and CAP_SYS_ADMIN would let it undo
its sandbox: mount a cgroupfs and leave its devices cgroup, remount /sys read-write
(/sys/power/state), unmount the /dev/null masks over other disks, pivot back out. The
filter refuses (EPERM) every call that changes mounts or namespaces, and the ones that
touch the machine as a whole (kexec, modules, swap, reboot, the clock, BPF, perf, other
processes' memory, input pushed into a terminal). `clone3` gets ENOSYS (its flags are
in memory the filter cannot read; glibc then falls back to `clone`, whose namespace
flags are refused). BLKPG and BLKRRPART (telling the kernel a disk's partitions) return
success and do nothing: the lab does that for the agent, in an order that never lets a
partition number reach it once it may belong to another machine (see
k1prov.lab.partitions.PartitionFence).

ironic-python-agent's whole-disk deploy with a config drive needs none of them: the
only one it tries is `mount`, to check the config drive it has just written (and then to
read the drive's file), and that check failed before the filter too (this kernel has no
iso9660): the same outcome, a warning and the drive as written.

Standalone on purpose: it runs inside the sandbox under Debian's /usr/bin/python3 with
python3-seccomp (libseccomp's binding), not under k1prov's or the lab's venv; the lab
copies this file into the sandbox (k1prov.lab.machine.SECCOMP_EXEC).
"""
from __future__ import annotations

import errno
import os
import sys

# Refused with EPERM, by name (libseccomp knows their numbers on every architecture).
DENIED_SYSCALLS = (
    # mounts and the root: the masks, the read-only sysfs and /proc/sys, the cgroupfs
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    # namespaces (a new mount or cgroup namespace is a way around the above)
    "setns", "unshare",
    # files by handle bypass the mount tree
    "open_by_handle_at", "name_to_handle_at",
    # the machine as a whole
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "swapon", "swapoff", "reboot", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "acct", "quotactl", "quotactl_fd", "syslog", "iopl", "ioperm",
    "bpf", "perf_event_open", "fanotify_init", "lookup_dcookie", "userfaultfd",
    "vhangup", "uselib",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # the kernel keyring (shared by the whole machine)
    "keyctl", "add_key", "request_key",
)
# Syscalls newer than the libseccomp of Debian 12, by number on x86_64: open_tree_attr
# (Linux 6.15) clones a mount with new attributes, e.g. a read-write copy of /sys.
DENIED_SYSCALL_NUMBERS_X86_64 = {"open_tree_attr": 467}
# ioctl(2) requests refused: TIOCSTI pushes input into a terminal (a shell's, with
# CAP_SYS_ADMIN even one that is not the caller's).
DENIED_IOCTLS = {"TIOCSTI": 0x5412}
# ioctl(2) requests that return success and do nothing: the kernel's partitions of the
# machine's disk are the lab's to change (its partition fence scans the disk when the
# agent's `udevadm settle` asks), so that a partition's number is refused to the agent
# before the kernel frees it for another machine's partition. parted, partprobe, partx,
# sgdisk and wipefs tell the kernel through these.
FAKED_IOCTLS = {"BLKRRPART": 0x125F, "BLKPG": 0x1269}
# clone(2) flags that make a namespace.
NAMESPACE_CLONE_FLAGS = {
    "CLONE_NEWTIME": 0x00000080, "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
}


def build_filter(seccomp):
    """The filter (a seccomp.SyscallFilter, not loaded). Everything not listed is allowed;
    a syscall of another ABI (i386, x32) kills the process (libseccomp's default)."""
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        # A name libseccomp does not know raises: the agent does not start (fail closed).
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    if os.uname().machine == "x86_64":
        for name, number in DENIED_SYSCALL_NUMBERS_X86_64.items():
            known = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0
            f.add_rule(seccomp.ERRNO(errno.EPERM), name if known else number)
    for request in DENIED_IOCTLS.values():
        f.add_rule(seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.EQ, request))
    for request in FAKED_IOCTLS.values():
        f.add_rule(seccomp.ERRNO(0), "ioctl", seccomp.Arg(1, seccomp.EQ, request))
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_CLONE_FLAGS.values():
        f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    return f


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: agent_seccomp.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        import seccomp
    except ImportError:
        print("agent_seccomp: python3-seccomp (libseccomp's binding) is not installed", file=sys.stderr)
        return 1
    build_filter(seccomp).load()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"agent_seccomp: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
