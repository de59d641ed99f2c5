"""The helper's seccomp filter, loaded into a forked child of the test (no bwrap): denied calls
fail with EPERM, the ones engines make (fork, threads, files) still work, and the numbers
agree with libseccomp's own table (an independent source, on every Debian host)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
import threading

import pytest

from appliance.engines import seccomp

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
CLONE_NEWUSER, CLONE_NEWNET, CLONE_FILES, SIGCHLD = 0x10000000, 0x40000000, 0x400, 17
KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3
ADDR_NO_RANDOMIZE = 0x0040000
GETPID = 39
PTRACE_GETREGS, NO_PID = 12, 0x3FFFFFFF


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _call(libc: ctypes.CDLL, nr: int, *args: int) -> int:
    """0 or more when the call succeeded, else minus its errno."""
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return result if result >= 0 else -ctypes.get_errno()


def _clone(libc: ctypes.CDLL, flags: int) -> int:
    """clone(2) as fork would make it, with ``flags`` added; a child made exits at once."""
    result = _call(libc, seccomp.CLONE, flags | SIGCHLD, 0, 0, 0, 0)
    if result == 0:
        os._exit(0)
    if result > 0:
        os.waitpid(result, 0)
        return 0
    return result


def _probe(libc: ctypes.CDLL) -> dict[str, int]:
    results = {
        # PTRACE_GETREGS of no process: ESRCH when allowed
        "ptrace": _call(libc, seccomp.DENIED["ptrace"], PTRACE_GETREGS, NO_PID, 0, 0),
        "keyctl": _call(
            libc, seccomp.DENIED["keyctl"], KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0
        ),
        "bpf": _call(libc, seccomp.DENIED["bpf"], 0, 0, 0),
        "mount": _call(libc, seccomp.DENIED["mount"], 0, 0, 0, 0, 0),
        "clone_user": _clone(libc, CLONE_NEWUSER),
        "clone_net": _clone(libc, CLONE_NEWNET),
        "clone_plain": _clone(libc, 0),
        "unshare_files": _call(libc, seccomp.UNSHARE, CLONE_FILES),
        "unshare_user": _call(libc, seccomp.UNSHARE, CLONE_NEWUSER),  # last: it moves us
        "clone3": _call(libc, seccomp.CLONE3, 0, 0),
        "personality_query": _call(libc, seccomp.PERSONALITY, 0xFFFFFFFF),
        "personality_no_aslr": _call(libc, seccomp.PERSONALITY, ADDR_NO_RANDOMIZE),
        "x32_getpid": _call(libc, seccomp.X32_SYSCALL_BIT | GETPID),
    }
    pid = os.fork()  # glibc's fork: clone without namespace flags
    if pid == 0:
        os._exit(7)
    results["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    ran: list[bool] = []
    thread = threading.Thread(target=lambda: ran.append(True))  # glibc tries clone3 first
    thread.start()
    thread.join()
    results["thread"] = int(ran == [True])
    return results


def _run_filtered(code: bytes) -> dict[str, int]:
    """Load ``code`` in a forked child, run the probe there, return what it saw."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            libc = _libc()
            buffer = ctypes.create_string_buffer(code, len(code))
            prog = SockFprog(len(code) // 8, ctypes.addressof(buffer))
            assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            assert libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) == 0
            os.write(write, json.dumps(_probe(libc)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(out)  # type: ignore[no-any-return]


def test_denied_calls_fail_with_eperm_and_an_engines_ordinary_calls_work():
    seen = _run_filtered(seccomp.program())
    eperm = -errno.EPERM
    assert seen["ptrace"] == seen["keyctl"] == seen["bpf"] == seen["mount"] == eperm
    assert seen["unshare_user"] == seen["clone_user"] == seen["clone_net"] == eperm
    assert seen["personality_no_aslr"] == seen["x32_getpid"] == eperm
    assert seen["clone3"] == -errno.ENOSYS  # so the C library falls back to clone
    assert seen["unshare_files"] == 0 and seen["clone_plain"] == 0
    assert seen["personality_query"] >= 0
    assert seen["fork"] == 7 and seen["thread"] == 1


def test_without_the_filter_the_probe_sees_the_calls_succeed():
    """The control: the probe itself is able to tell (a permissive program, one ALLOW)."""
    allow_all = struct.pack("<HBBI", seccomp.RET_K, 0, 0, seccomp.RET_ALLOW)
    seen = _run_filtered(allow_all)
    assert seen["unshare_user"] == 0 and seen["clone_user"] == 0
    assert seen["ptrace"] == -errno.ESRCH and seen["clone3"] != -errno.ENOSYS


def test_the_denied_numbers_are_the_kernels_as_libseccomp_knows_them():
    lib = ctypes.CDLL("libseccomp.so.2")
    resolve = lib.seccomp_syscall_resolve_name_arch
    resolve.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    resolve.restype = ctypes.c_int
    checked = {
        **seccomp.DENIED,
        "clone": seccomp.CLONE,
        "unshare": seccomp.UNSHARE,
        "personality": seccomp.PERSONALITY,
        "clone3": seccomp.CLONE3,
    }
    wrong = {
        name: nr
        for name, nr in checked.items()
        if resolve(seccomp.AUDIT_ARCH_X86_64, name.encode()) != nr
    }
    assert wrong == {}


def test_another_architecture_is_refused_with_the_setting_to_turn_it_off():
    with pytest.raises(seccomp.UnsupportedArchitecture, match="APPLIANCE_SANDBOX_SECCOMP"):
        seccomp.program("aarch64")
