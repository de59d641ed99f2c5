"""The seccomp filter every engine helper runs under: a classic BPF program that bubblewrap
loads (``bwrap --seccomp FD``) right before it starts the helper, inherited by everything the
helper runs.

A denylist: system calls no engine needs and an escape wants (debugging other processes, the
kernel keyring, BPF, perf, userfaultfd, module and kexec loading, mounts, namespaces, io_uring,
accounting, swap, reboot, the kernel log, the clock...). They fail with EPERM, so an engine that
tries one fails cleanly instead of being killed. Namespaces: ``unshare``/``clone`` with any
CLONE_NEW* flag fail (no nested user namespace, the usual first step of a kernel exploit), and
``clone3``, whose flags sit in memory a filter cannot read, reports ENOSYS: the C library then
falls back to ``clone``, which the filter can check. ``personality`` may only keep the default
or ask for it (no ASLR switch-off, no READ_IMPLIES_EXEC).

Written here rather than through libseccomp: its Python binding is no wheel on PyPI, and the
program is short. x86_64 only: a call through another ABI (32-bit ``int 0x80``) kills the
process, x32 calls fail with EPERM. The numbers come from the kernel's unistd_64.h; the unit
tests check them against libseccomp's table and run the program in a child process.
"""

from __future__ import annotations

import errno
import platform
import struct

# The kernel's x86_64 numbers of the denied calls (arch/x86/entry/syscalls/syscall_64.tbl).
DENIED: dict[str, int] = {
    "syslog": 103,
    "ptrace": 101,
    "uselib": 134,
    "vhangup": 153,
    "pivot_root": 155,
    "_sysctl": 156,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}
# Allowed only with arguments the filter checks (see the module docstring).
CLONE, UNSHARE, PERSONALITY, CLONE3 = 56, 272, 135, 435
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET; CLONE_NEWTIME (0x80)
# is CSIGNAL's bit for clone, but a namespace for unshare: checked there too.
CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
CLONE_NEW_ANY |= 0x40000000
CLONE_NEWTIME = 0x00000080
# personality(2) values an engine may pass: PER_LINUX, PER_LINUX32, UNAME26 with either, and
# 0xffffffff, which only reads the current one (the set container runtimes allow).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # args[0]'s low 32 bits (little-endian)

# classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h)
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000

# One instruction before labels are resolved: (code, jump-if-true, jump-if-false, k), a jump
# target being a label name (None: the next instruction).
_Insn = tuple[int, str | None, str | None, int]


class UnsupportedArchitecture(RuntimeError):
    pass


def _check(offset: int, labelled: str, deny: str, values: tuple[int, ...] = (), mask: int = 0):
    """The block at ``labelled``: args[0] passes when it equals one of ``values`` or has no
    bit of ``mask``; else ``deny``."""
    block: list[tuple[str | None, _Insn]] = [(labelled, (LD_W_ABS, None, None, offset))]
    if mask:
        block.append((None, (JSET_K, deny, "allow", mask)))
    for value in values:
        block.append((None, (JEQ_K, "allow", None, value)))
    if values:
        block.append((None, (RET_K, None, None, RET_ERRNO | errno.EPERM)))
    return block


def _instructions() -> list[tuple[str | None, _Insn]]:
    eperm = RET_ERRNO | errno.EPERM
    body: list[tuple[str | None, _Insn]] = [
        (None, (LD_W_ABS, None, None, OFFSET_ARCH)),
        (None, (JEQ_K, None, "kill", AUDIT_ARCH_X86_64)),
        (None, (LD_W_ABS, None, None, OFFSET_NR)),
        (None, (JGE_K, "eperm", None, X32_SYSCALL_BIT)),
        *((None, (JEQ_K, "eperm", None, nr)) for nr in sorted(DENIED.values())),
        (None, (JEQ_K, "enosys", None, CLONE3)),
        (None, (JEQ_K, "clone", None, CLONE)),
        (None, (JEQ_K, "unshare", None, UNSHARE)),
        (None, (JEQ_K, "personality", "allow", PERSONALITY)),
        # BPF jumps only forward: the argument checks, then the verdicts they jump to
        *_check(OFFSET_ARG0, "clone", "eperm", mask=CLONE_NEW_ANY),
        *_check(OFFSET_ARG0, "unshare", "eperm", mask=CLONE_NEW_ANY | CLONE_NEWTIME),
        *_check(OFFSET_ARG0, "personality", "eperm", values=PERSONALITIES),
        ("allow", (RET_K, None, None, RET_ALLOW)),
        ("kill", (RET_K, None, None, RET_KILL_PROCESS)),
        ("eperm", (RET_K, None, None, eperm)),
        ("enosys", (RET_K, None, None, RET_ERRNO | errno.ENOSYS)),
    ]
    return body


def program(machine: str | None = None) -> bytes:
    """The filter as bwrap reads it: ``struct sock_filter`` records, native byte order."""
    machine = machine or platform.machine()
    if machine != "x86_64":
        raise UnsupportedArchitecture(
            f"the sandbox's seccomp filter is written for x86_64, not {machine}; "
            "set APPLIANCE_SANDBOX_SECCOMP=off to run engines without it"
        )
    listing = _instructions()
    where = {label: n for n, (label, _) in enumerate(listing) if label is not None}
    out = bytearray()
    for n, (_, (code, true, false, k)) in enumerate(listing):
        jt = where[true] - n - 1 if true else 0
        jf = where[false] - n - 1 if false else 0
        if not (0 <= jt <= 255 and 0 <= jf <= 255):  # BPF jumps forward, 8 bits at most
            raise AssertionError(f"seccomp instruction {n}: jump {jt}/{jf} out of range")
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)
