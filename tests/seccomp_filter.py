"""A real seccomp filter, of the kind Docker's default profile or a hardened CI runner installs.

The checker's modes are simulated elsewhere by patching Python (a
``socket`` module without AF_NETLINK, an ``open_netlink`` that raises).
This installs the kernel's own refusal instead: a classic-BPF program,
through ``prctl(PR_SET_SECCOMP)``, that makes one system call fail with
EPERM, in this process and every process it starts from then on.  There is
no way back, so a test runs it in a child (`python tests/seccomp_filter.py
RULE -- PROGRAM ARGS...` execs the program under the filter).

Rules:

- ``netlink``: ``socket(AF_NETLINK, ...)`` (sock_diag refused; other sockets work);
- ``unshare``: ``unshare()`` with any flags (no network, PID or user namespace:
  Docker's default profile refuses it without CAP_SYS_ADMIN).

x86-64 and aarch64 only (`available()` says why not elsewhere).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
import sys

#: Per machine: the audit architecture seccomp reports, and the system call numbers.
_ARCH = {
    "x86_64": (0xC000003E, {"socket": 41, "unshare": 272}),
    "aarch64": (0xC00000B7, {"socket": 198, "unshare": 97}),
}
#: rule -> (system call, the first argument it must have to be refused; None: any)
RULES = {"netlink": ("socket", getattr(socket, "AF_NETLINK", 16)), "unshare": ("unshare", None)}

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
# Classic BPF opcodes: load a word of seccomp_data, jump if equal, return.
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
# Offsets in struct seccomp_data: nr, arch, instruction pointer, args[6].
_NR, _ARCH_AT, _ARG0 = 0, 4, 16


def available() -> str | None:
    """Why no filter can be installed here (None: it can)."""
    if sys.platform != "linux":
        return "seccomp is Linux's"
    if platform.machine() not in _ARCH:
        return f"no system call table here for {platform.machine()}"
    if struct.calcsize("P") != 8:
        return "a 32-bit Python: its system calls are not the 64-bit table's"
    return None


def _program(rule: str) -> bytes:
    arch, numbers = _ARCH[platform.machine()]
    call, first = RULES[rule]
    refuse = _RET_ERRNO | errno.EPERM

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    if first is None:
        ops = [
            op(_LD_W_ABS, _ARCH_AT),
            op(_JEQ_K, arch, 0, 3),  # another architecture: allow
            op(_LD_W_ABS, _NR),
            op(_JEQ_K, numbers[call], 0, 1),
            op(_RET_K, refuse),
            op(_RET_K, _RET_ALLOW),
        ]
    else:
        ops = [
            op(_LD_W_ABS, _ARCH_AT),
            op(_JEQ_K, arch, 0, 5),
            op(_LD_W_ABS, _NR),
            op(_JEQ_K, numbers[call], 0, 3),
            op(_LD_W_ABS, _ARG0),  # the low 32 bits of the first argument
            op(_JEQ_K, first, 0, 1),
            op(_RET_K, refuse),
            op(_RET_K, _RET_ALLOW),
        ]
    return b"".join(ops)


def install(rule: str) -> None:
    """Refuse `rule`'s system call (EPERM) in this process and all it starts, for good."""
    why = available()
    if why:
        raise OSError(errno.ENOSYS, why)
    code = _program(rule)
    filters = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(filters))
    prog = ctypes.create_string_buffer(fprog, len(fprog))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def main(argv: list[str]) -> None:
    """``seccomp_filter.py RULE -- PROGRAM ARGS...``: exec PROGRAM under the filter."""
    if len(argv) < 3 or argv[1] != "--" or argv[0] not in RULES:
        sys.exit(f"usage: seccomp_filter.py {{{','.join(RULES)}}} -- PROGRAM [ARGS...]")
    install(argv[0])
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
