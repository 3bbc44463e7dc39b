"""Every witness mode, simulated on this machine: never a false verdict when a witness is missing.

The kernel witnesses (sock_diag netlink, /proc, TCP_QUICKACK) are probed once
with real calls (spec/drivers/witness.py).  Here each is taken away the way a
seccomp filter, a container or another platform takes it away: the netlink
socket raises PermissionError, /proc reads raise PermissionError (or /proc is
an empty tmpfs in a mount namespace), the socket module has no AF_NETLINK or
TCP_QUICKACK.  In each mode the reference passes what the mode can judge and
is "not judged, because ..." for the rest; a defective server is never a PASS.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import settings
from runs import ROOT

from spec.checker import Outcome, check
from spec.drivers import network, sock_diag, witness
from spec.drivers.clients import BUFFER_SIZE
from spec.drivers.network import PrivateNetwork, host_flood
from spec.drivers.server_process import ServerProcess
from spec.judge import cannot_judge, overrule
from spec.program import MAX_PAYLOAD_SIZE, MiB
from spec.targets import Target

PY = sys.executable
SMALL = settings(max_examples=10, stateful_step_count=8, derandomize=True, database=None)
REFERENCE = Target("cmd", f"{PY} -m impl.select_server --port {{port}} --log-level WARNING")
SEED_UPPER = Target("cmd", f"{PY} -m impl.seed_upper_server --port {{port}}")


def zoo(name: str) -> Target:
    return Target("cmd", f"{PY} -m spec.drivers.run_impl {name} --port {{port}}")


def judged(target: Target, req_id: str, budget: float = 10) -> Outcome:
    """check(), then made "not judged" where this mode cannot be sure (as `pytest` does)."""
    since = witness.mark()
    outcome = check(target, req_id, hypothesis_settings=SMALL, budget=budget)
    result: Outcome = overrule(outcome, kind=target.kind, since=since)
    return result


def passed_by_the_clock(outcome: Outcome) -> bool:
    """A PASS, or a pass made "not judged" because too few programs fitted the budget."""
    return outcome.verdict == "pass" or (
        outcome.verdict == "not-run"
        and "(pass by what it could see)" in outcome.detail
        and "fitted the time budget" in outcome.detail
    )


# -- the modes, simulated --------------------------------------------------------------------


@pytest.fixture
def reprobe(monkeypatch: pytest.MonkeyPatch) -> Callable[[], witness.Capabilities]:
    """Forget the probe's answer, so that the next `capabilities()` asks the kernel again."""

    def again() -> witness.Capabilities:
        monkeypatch.setattr(witness, "_probed", None)
        return witness.capabilities()

    yield again
    witness._probed = None  # the real answer for later tests


def _refuse_netlink(monkeypatch: pytest.MonkeyPatch) -> None:
    """socket(AF_NETLINK) fails with EPERM, as under a seccomp filter."""

    def refused(*args: Any, **kwargs: Any) -> socket.socket:
        raise PermissionError(errno.EPERM, "Operation not permitted (simulated seccomp)")

    monkeypatch.setattr(sock_diag, "open_netlink", refused)


def _is_hidden(path: object) -> bool:
    p = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else ""
    # This process's own entries stay: namespaces and its own descriptors.
    return p.startswith("/proc/") and not p.startswith(("/proc/self", "/proc/thread-self"))


def _hide_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other processes' /proc entries raise PermissionError, as under a root-only tmpfs."""

    def guard(real: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
            if _is_hidden(path):
                raise PermissionError(errno.EACCES, "Permission denied (simulated)", str(path))
            return real(path, *args, **kwargs)

        return guarded

    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(os, "listdir", guard(os.listdir))
    monkeypatch.setattr(os, "readlink", guard(os.readlink))

    class Hidden(psutil.Process):
        def __init__(self, pid: int | None = None) -> None:
            raise PermissionError(errno.EACCES, "Permission denied (simulated)")

    monkeypatch.setattr(psutil, "Process", Hidden)


@pytest.fixture
def netlink_refused(
    monkeypatch: pytest.MonkeyPatch, reprobe: Callable[[], witness.Capabilities]
) -> witness.Capabilities:
    _refuse_netlink(monkeypatch)
    caps = reprobe()
    assert caps.netlink is not None and caps.proc is None
    return caps


@pytest.fixture
def proc_hidden(
    monkeypatch: pytest.MonkeyPatch, reprobe: Callable[[], witness.Capabilities]
) -> witness.Capabilities:
    _hide_proc(monkeypatch)
    caps = reprobe()
    assert caps.proc is not None and caps.netlink is None
    return caps


@pytest.fixture
def not_linux(
    monkeypatch: pytest.MonkeyPatch, reprobe: Callable[[], witness.Capabilities]
) -> witness.Capabilities:
    """The socket module of macOS or a BSD: no AF_NETLINK, no TCP_QUICKACK."""
    monkeypatch.delattr(socket, "AF_NETLINK")
    monkeypatch.delattr(socket, "TCP_QUICKACK")
    caps = reprobe()
    assert caps.netlink is not None and not caps.quickack
    return caps


# -- the probe asks with real calls --------------------------------------------------------


def test_the_probe_finds_everything_here(reprobe: Callable[[], witness.Capabilities]) -> None:
    caps = reprobe()
    assert caps.complete, caps
    assert caps.quickack


def test_the_probe_finds_netlink_refused(netlink_refused: witness.Capabilities) -> None:
    assert "Operation not permitted" in str(netlink_refused.netlink)


def test_the_probe_finds_proc_hidden(proc_hidden: witness.Capabilities) -> None:
    assert "Permission denied" in str(proc_hidden.proc)


def test_the_probe_finds_no_af_netlink(not_linux: witness.Capabilities) -> None:
    assert "AF_NETLINK" in str(not_linux.netlink)


# -- netlink refused: by the clock, never a dead server -------------------------------------


def test_netlink_refused_the_reference_passes_and_cleanup_is_not_judged(
    netlink_refused: witness.Capabilities,
) -> None:
    for req_id in ("ECHO-2", "ECHO-5"):
        outcome = judged(REFERENCE, req_id)
        assert passed_by_the_clock(outcome), (req_id, outcome.verdict, outcome.detail)
        assert str(outcome.environment["judged"]).startswith("by the clock"), outcome.environment
        assert "sock_diag" in str(outcome.environment["weakens"])
    cleanup = judged(REFERENCE, "ECHO-6")
    assert cleanup.verdict == "not-run"
    assert "sock_diag" in cleanup.detail, cleanup.detail


def test_netlink_refused_the_seed_still_fails_what_it_breaks(
    netlink_refused: witness.Capabilities,
) -> None:
    # By the clock every step waits the settle time: 30 s usually fit the
    # programs that reach a reset (the ECHO-5 machine also plays races and
    # floods), and 2 programs in 30 s were seen once in about 15 runs.
    outcome = judged(SEED_UPPER, "ECHO-5", budget=60)
    assert outcome.verdict == "fail", outcome.detail
    assert judged(SEED_UPPER, "ECHO-4", budget=30).verdict == "fail"


def test_netlink_refused_a_blocking_send_is_never_a_pass(
    netlink_refused: witness.Capabilities,
) -> None:
    outcome = judged(zoo("impl.zoo.liveness:SendallEchoServer"), "ECHO-7", budget=15)
    assert outcome.verdict in ("fail", "not-run"), outcome.detail


def test_a_witness_lost_mid_run_is_not_a_dead_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """sock_diag answers at start, then refuses every lookup: the clock judges from there."""
    assert witness.capabilities().complete

    def refused(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted (simulated)")

    monkeypatch.setattr(sock_diag, "lookup", refused)
    monkeypatch.setattr(sock_diag, "lookup_many", refused)
    since = witness.mark()
    for req_id in ("ECHO-2", "ECHO-5"):
        outcome = judged(REFERENCE, req_id)
        assert passed_by_the_clock(outcome), (req_id, outcome.verdict, outcome.detail)
    assert witness.losses_since(since)
    cleanup = judged(REFERENCE, "ECHO-6")
    assert cleanup.verdict == "not-run"
    assert "lost mid-run" in cleanup.detail, cleanup.detail


# -- /proc hidden -----------------------------------------------------------------------------


def test_proc_hidden_a_server_starts(proc_hidden: witness.Capabilities) -> None:
    with ServerProcess(REFERENCE.spec) as server, server.connect(timeout=5) as c:
        c.sendall(b"a")
        assert c.recv(1) == b"A"
        assert server.memory_rss() == 0  # unknown, not a crash


def test_proc_hidden_the_reference_passes_and_the_rest_is_not_judged(
    proc_hidden: witness.Capabilities,
) -> None:
    outcome = judged(REFERENCE, "ECHO-1")
    assert passed_by_the_clock(outcome), (outcome.verdict, outcome.detail)
    assert "/proc" in str(outcome.environment["judged"])
    for req_id in ("ECHO-6", "ECHO-9"):
        outcome = judged(REFERENCE, req_id)
        assert outcome.verdict == "not-run", (req_id, outcome.detail)
        assert "/proc" in outcome.detail
    outcome = judged(SEED_UPPER, "ECHO-5", budget=30)
    assert outcome.verdict == "fail", outcome.detail


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_proc_hidden_by_a_real_mount_namespace(tmp_path: Path) -> None:
    """A child run with an empty tmpfs over /proc: no crash; a pass, or not judged."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json
            from hypothesis import settings
            from spec.checker import check
            from spec.drivers import witness
            from spec.judge import overrule
            from spec.targets import Target
            target = Target("cmd", {REFERENCE.spec!r})
            small = settings(max_examples=5, stateful_step_count=6, derandomize=True,
                             database=None)
            verdicts = {{}}
            for req_id in ("ECHO-1", "ECHO-6"):
                o = overrule(check(target, req_id, hypothesis_settings=small, budget=15),
                             kind="cmd")
                verdicts[req_id] = [o.verdict, o.detail[:200]]
            print(json.dumps({{"proc": witness.capabilities().proc, "verdicts": verdicts}}))
            """
        )
    )
    done = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount -t tmpfs -o mode=0700 none /proc && exec {PY} {script}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "mount" in done.stderr and done.returncode != 0 and not done.stdout:
        pytest.skip(f"cannot mount over /proc here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["proc"], result
    verdict, detail = result["verdicts"]["ECHO-1"]
    assert verdict == "pass" or "fitted the time budget" in detail, result
    assert result["verdicts"]["ECHO-6"][0] == "not-run", result


# -- a real seccomp filter, as containers and hardened runners install one ---------------------

SECCOMP = Path(__file__).resolve().parent.parent / "seccomp_filter.py"


def _under_seccomp(rule: str, checks: list[tuple[str, str, str]]) -> dict[str, Any]:
    """In a child under a real seccomp filter refusing `rule`'s system call:
    the mode it finds, and the verdict of each (name, command, requirement)."""
    import seccomp_filter

    why = seccomp_filter.available()
    if why:
        pytest.skip(why)
    code = textwrap.dedent(
        f"""
        import json
        from hypothesis import settings
        from spec.checker import check
        from spec.drivers import witness
        from spec.drivers.network import PrivateNetwork
        from spec.judge import overrule
        from spec.targets import Target
        small = settings(max_examples=6, stateful_step_count=6, derandomize=True,
                         database=None)
        result = {{"netlink": witness.capabilities().netlink,
                   "private": PrivateNetwork.shared() is not None,
                   "refused": PrivateNetwork.refused()}}
        for name, command, req_id in {checks!r}:
            since = witness.mark()
            o = overrule(check(Target("cmd", command), req_id, hypothesis_settings=small,
                               budget=15), kind="cmd", since=since)
            result[name] = [o.verdict, o.detail[:300], o.environment.get("mode", "")]
        print(json.dumps(result))
        """
    )
    done = subprocess.run(
        [PY, str(SECCOMP), rule, "--", PY, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_netlink_refused_by_a_real_seccomp_filter() -> None:
    """socket(AF_NETLINK) refused by the kernel: judged by the clock, and the
    reference no longer fails ECHO-5 (it did when a refused look meant a dead server)."""
    result = _under_seccomp(
        "netlink",
        [
            ("reference", REFERENCE.spec, "ECHO-5"),
            ("cleanup", REFERENCE.spec, "ECHO-6"),
            ("seed", SEED_UPPER.spec, "ECHO-5"),
        ],
    )
    assert "Operation not permitted" in str(result["netlink"]), result
    verdict, detail, mode = result["reference"]
    assert verdict == "pass" or "fitted the time budget" in detail, result
    assert "at rest by the clock" in mode, mode
    assert result["cleanup"][0] == "not-run", result
    assert result["seed"][0] == "fail", result


def test_namespaces_refused_by_a_real_seccomp_filter() -> None:
    """unshare() refused, as Docker's default profile does without CAP_SYS_ADMIN:
    the host's network and a process group; a blocking server is still caught
    (ECHO-7), a PASS of ECHO-4 is not judged there, and the reference passes the rest."""
    result = _under_seccomp(
        "unshare",
        [
            ("reference", REFERENCE.spec, "ECHO-2"),
            ("half-close", REFERENCE.spec, "ECHO-4"),
            ("sendall", zoo("impl.zoo.liveness:SendallEchoServer").spec, "ECHO-7"),
        ],
    )
    assert not result["private"] and "Operation not permitted" in result["refused"], result
    verdict, _, mode = result["reference"]
    assert verdict == "pass", result
    assert mode.startswith("host network") and "process group" in mode, mode
    assert result["half-close"][0] == "not-run" and "ECHO-4" in result["half-close"][1], result
    assert result["sendall"][0] == "fail" and "ECHO-7" in result["sendall"][1], result


# -- not Linux: no AF_NETLINK, no TCP_QUICKACK ---------------------------------------------


def test_not_linux_impl_still_runs(not_linux: witness.Capabilities) -> None:
    outcome = judged(Target("impl", "impl.select_server:SelectEchoServer"), "ECHO-2")
    assert outcome.verdict == "pass", outcome.detail
    seed = judged(Target("impl", "impl.seed_upper_server:SeedUpperServer"), "ECHO-5")
    assert seed.verdict == "fail"


def test_not_linux_a_process_is_judged_by_the_clock(not_linux: witness.Capabilities) -> None:
    outcome = judged(REFERENCE, "ECHO-1")
    assert passed_by_the_clock(outcome), (outcome.verdict, outcome.detail)
    assert str(outcome.environment["judged"]).startswith("by the clock")


# -- host network: what it cannot judge ------------------------------------------------------


@pytest.fixture
def host_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No private network (as for a user without namespaces)."""
    monkeypatch.setattr(PrivateNetwork, "shared", classmethod(lambda cls: None))
    monkeypatch.setattr(PrivateNetwork, "_refused", "unshare refused (simulated)")
    yield


def test_host_network_floods_fill_any_servers_buffers(host_network: None) -> None:
    """Issue 19: on the host's loopback a server's send buffer autotunes to
    megabytes; floods sized from the sysctls that bound it fill it whatever
    the kernel does, so a PASS of ECHO-7 is judged there too."""
    outcome = judged(REFERENCE, "ECHO-7", budget=15)
    assert outcome.verdict == "pass", outcome.detail
    backs_up = outcome.environment["network"]["floods_back_up"]  # type: ignore[index]
    assert backs_up == host_flood(BUFFER_SIZE, MAX_PAYLOAD_SIZE) and backs_up >= 5 * MiB
    assert f"floods are {backs_up // MiB} MiB" in str(outcome.environment["weakens"])
    assert "host network" in str(outcome.environment["mode"])
    assert "user namespaces" in str(outcome.environment["better"])
    assert judged(REFERENCE, "ECHO-1").verdict == "pass"


@pytest.mark.slow
def test_host_network_a_blocking_send_is_caught(host_network: None) -> None:
    outcome = judged(zoo("impl.zoo.liveness:SendallEchoServer"), "ECHO-7", budget=60)
    assert outcome.verdict == "fail" and "asleep in sendto()" in outcome.detail, outcome.detail


def test_host_network_unknown_buffers_a_pass_of_liveness_is_not_judged(
    host_network: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(network, "_TCP_WMEM", str(tmp_path / "unreadable"))
    outcome = judged(REFERENCE, "ECHO-7", budget=8)
    assert outcome.verdict == "not-run", outcome.detail
    assert "net.ipv4.tcp_wmem" in outcome.detail
    assert "floods_back_up" not in outcome.environment["network"]  # type: ignore[operator]


def test_host_flood_is_read_from_the_sysctls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wmem, wmem_max = tmp_path / "tcp_wmem", tmp_path / "wmem_max"
    monkeypatch.setattr(network, "_TCP_WMEM", str(wmem))
    monkeypatch.setattr(network, "_WMEM_MAX", str(wmem_max))
    wmem.write_text("4096\t16384\t4194304\n")
    wmem_max.write_text("212992\n")
    # autotuned 4 MiB + the client's 2 x 256 KiB + 1 MiB, rounded up
    assert host_flood(256 * 1024, 64 * MiB) == 6 * MiB
    wmem_max.write_text("8388608\n")  # SO_SNDBUF may then set 16 MiB
    assert host_flood(256 * 1024, 64 * MiB) == 18 * MiB
    # More than a program may send (a replay refuses it): no flood is sure.
    assert host_flood(256 * 1024, 16 * MiB) is None
    wmem.write_text("garbage")
    assert host_flood(256 * 1024, 64 * MiB) is None


def test_the_root_mode_changes_no_verdict() -> None:
    """With every witness and the private network, overrule() leaves verdicts alone."""
    caps = witness.Capabilities(None, None, True)
    for req_id in ("ECHO-1", "ECHO-6", "ECHO-7", "ECHO-8", "ECHO-9"):
        for verdict in ("pass", "fail"):
            assert (
                cannot_judge(req_id, verdict, kind="cmd", caps=caps, private=True, lost=[]) is None
            )


# -- user namespaces: the private network for a user who is not root ------------------------


@pytest.fixture
def user_namespace_network() -> Iterator[PrivateNetwork]:
    """The private network as a user who is not root gets it: inside a user namespace."""
    try:
        network = PrivateNetwork._create_in_user_namespace()
    except OSError as e:
        pytest.skip(f"user namespaces are refused here: {e}")
    yield network
    network.close()


def test_a_user_namespace_gives_the_same_network_and_containment(
    user_namespace_network: PrivateNetwork,
) -> None:
    network = user_namespace_network
    assert network.in_user_namespace
    assert "user namespace" in str(network.describe()["namespace"])
    with ServerProcess(REFERENCE.spec, network=network) as server, server.connect(5) as c:
        assert server.contained
        assert c.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 32768  # tcp_wmem there
        c.sendall(b"ab")
        assert c.recv(2) == b"AB"
        listeners = sock_diag.listening_inodes(server.port, new_socket=network.socket)
        assert listeners  # sock_diag asks the namespace's own network
    assert not sock_diag.listening_inodes(server.port)  # nothing of it on the host


def test_user_namespaces_refused_the_report_says_which_refusal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not root, and the helper's unshare(CLONE_NEWUSER) refused (as by a seccomp filter)."""

    def not_root(cls: type) -> None:
        raise OSError(errno.EPERM, "cannot make a network namespace (unshare): not permitted")

    refusing = tmp_path / "refusing.py"
    refusing.write_text(
        "import socket, sys\n"
        "socket.socket(fileno=int(sys.argv[1])).sendall(b'refused OSError: [Errno 1] "
        "unshare(CLONE_NEWUSER | CLONE_NEWNET): Operation not permitted (simulated)\\n')\n"
    )
    monkeypatch.setattr(PrivateNetwork, "_create", classmethod(not_root))
    monkeypatch.setattr("spec.drivers.network._USERNS_HELPER", str(refusing))
    monkeypatch.setattr(PrivateNetwork, "_shared", None)
    monkeypatch.setattr(PrivateNetwork, "_refused", None)
    assert PrivateNetwork.shared() is None
    why = str(PrivateNetwork.refused())
    assert "not permitted" in why and "CLONE_NEWUSER" in why, why
    mode = witness.describe_mode(private_refused=why, private=False, contained=False)
    assert mode["mode"].startswith("host network")
    assert "CLONE_NEWUSER" in mode["weakens"] and "ECHO-7" in mode["weakens"]
    assert "ECHO-4 cannot PASS" in mode["weakens"]
    assert "unprivileged_userns_clone" in mode["better"]


def test_on_the_host_network_a_pass_of_echo4_is_not_judged() -> None:
    """Autotuned buffers make an EOF that meets queued echo a matter of luck there."""
    root = witness.Capabilities(None, None, True)
    why = cannot_judge("ECHO-4", "pass", kind="cmd", caps=root, private=False, lost=[])
    assert why is not None and "a PASS of ECHO-4" in why and "private network" in why
    assert cannot_judge("ECHO-4", "fail", kind="cmd", caps=root, private=False, lost=[]) is None
    assert cannot_judge("ECHO-4", "pass", kind="cmd", caps=root, private=True, lost=[]) is None
    assert cannot_judge("ECHO-4", "pass", kind="impl", caps=root, private=False, lost=[]) is None


def test_by_the_clock_a_pass_the_budget_cut_short_is_not_judged() -> None:
    """Two programs in the budget are too few to pass a defect by the clock; root keeps its pass."""
    clock = witness.Capabilities("refused (simulated)", None, True)
    why = cannot_judge(
        "ECHO-5", "pass", kind="cmd", caps=clock, private=True, lost=[], cut_short_at=2
    )
    assert why is not None and "only 2 programs" in why and "--echo-budget" in why
    assert (
        cannot_judge(
            "ECHO-5", "pass", kind="cmd", caps=clock, private=True, lost=[], cut_short_at=40
        )
        is None
    )
    root = witness.Capabilities(None, None, True)
    assert (
        cannot_judge("ECHO-5", "pass", kind="cmd", caps=root, private=True, lost=[], cut_short_at=2)
        is None
    )
