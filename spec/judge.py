"""The judge: facts the drivers and the witness report, named as requirements.

Design note
-----------
Drivers run the server and report what they saw (`spec.drivers.facts`): it
died, it still holds a connection that ended.  The witness
(`spec.drivers.witness`) reports what the kernel can show here and what it
stopped showing mid-run.  Neither knows a requirement.  This module is where
those facts become verdicts:

- `violation()`: a fact as the violation it is (a dead server breaks ECHO-5,
  a held connection ECHO-6);
- `overrule()`: after a check, a verdict this mode cannot give surely made
  "not judged, because ...", so that a weaker mode says less, never
  something false:

  - ECHO-6 (cleanup) needs both the server's socket for each connection
    (sock_diag) and the descriptors that refer to it (/proc);
  - a PASS of ECHO-4 (half-close) needs an EOF that meets echo the server
    has yet to send, which the host's autotuned buffers make a matter of
    luck (the private network's small fixed ones make it sure);
  - a PASS of ECHO-7 (liveness) needs the system call a server sleeps in
    (/proc, with the sockets from sock_diag) and buffers a flood is known to
    fill (the private network's, or the host's sized from its sysctls):
    without them a server blocked in send() looks like a slow one;
  - ECHO-8 and ECHO-9 measure the server's memory and CPU time, read from /proc;
  - a PASS by the clock that the time budget cut short after fewer than
    `CLOCK_PROGRAMS` programs is too little to go on.
"""

from __future__ import annotations

from typing import Any

from spec.drivers import witness
from spec.drivers.facts import Fact, ServerDied
from spec.model import Violation
from spec.requirements import CLEANUP, HALF_CLOSE, IDLE, LIVENESS, MEMORY, RESILIENCE
from spec.targets import TargetKind
from spec.verdicts import Verdict


def violation(fact: Fact | None) -> Violation | None:
    """The violation a driver's fact is (None for no fact)."""
    if fact is None:
        return None
    if isinstance(fact, ServerDied):
        return Violation(RESILIENCE, fact.detail)
    return Violation(CLEANUP, fact.detail, connection=fact.connection, waited=fact.waited)


#: Fewer programs than this, cut short by the budget, do not make a PASS by the clock.
CLOCK_PROGRAMS = 20


def cannot_judge(
    req_id: str,
    verdict: str,
    *,
    kind: TargetKind | str,
    caps: witness.Capabilities,
    private: bool,
    lost: list[str],
    cut_short_at: int | None = None,
    floods_back_up: bool = False,
) -> str | None:
    """Why this verdict is not sure in this mode (None: it is).

    `kind`: how the target runs; `lost`: witnesses lost during the
    check; `cut_short_at`: for a PASS the time budget cut short, how many
    programs it saw.
    """
    kind = TargetKind(kind)  # a TargetKind, or its value
    judged = (Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE)
    if kind is TargetKind.CMD and verdict in judged:
        clock = not caps.complete or bool(lost)
        why_clock = (
            "; ".join([*(f"lost mid-run: {r}" for r in lost), *caps.unwitnessed()])
            or "the kernel cannot be asked"
        )
        if req_id == CLEANUP and clock:
            return (
                "ECHO-6 needs the server's socket for each connection (sock_diag) and the "
                f"descriptors that still refer to it (/proc); here: {why_clock}"
            )
        if req_id == LIVENESS and verdict == Verdict.PASS:
            if clock:
                return (
                    "a PASS of ECHO-7 needs the system call a server sleeps in (/proc) and its "
                    "sockets (sock_diag): by the clock a server blocked in send() looks like a "
                    f"slow one; here: {why_clock}"
                )
            if not private and not floods_back_up:
                return (
                    "a PASS of ECHO-7 needs floods that fill a blocking server's buffers: the "
                    "private network's are small and fixed; on the host's loopback the kernel "
                    "autotunes them to megabytes, and the sysctls that bound them "
                    "(net.ipv4.tcp_wmem, net.core.wmem_max) could not be read"
                )
    if req_id == HALF_CLOSE and verdict == Verdict.PASS and kind is TargetKind.CMD and not private:
        return (
            "a PASS of ECHO-4 needs the server to meet an EOF with echo it has yet to send: "
            "on the host's loopback the kernel grows the server's buffers to megabytes, and "
            "whether an EOF after a flood finds echo waiting depends on how far they grew "
            "(a server that closes at EOF lost echo in 2 of 8 plays of one program there, "
            "in a private network's small fixed buffers in every play); run where a "
            "private network can be made (root, or user namespaces allowed)"
        )
    if req_id in (MEMORY, IDLE) and verdict == Verdict.PASS and caps.proc is not None:
        return f"{req_id} measures the server's memory and CPU time in /proc: {caps.proc}"
    seen = cut_short_at if verdict == Verdict.PASS and kind is TargetKind.CMD else None
    if (not caps.complete or lost) and seen is not None and seen < CLOCK_PROGRAMS:
        return (
            f"by the clock each step waits --echo-settle seconds, and only {seen} programs "
            f"fitted the time budget (fewer than {CLOCK_PROGRAMS}): too few to pass; "
            "give a larger --echo-budget"
        )
    return None


def overrule(outcome: Any, *, kind: TargetKind | str, since: int = 0) -> Any:
    """`outcome` made "not judged" where this mode cannot give its verdict surely.

    `kind`: how the target runs; `since`: `witness.mark()` before
    the check, so that a witness lost during it counts.
    """
    caps = witness.capabilities()
    network = outcome.environment.get("network")
    private = isinstance(network, dict) and str(network.get("namespace", "")).startswith("private")
    floods_back_up = isinstance(network, dict) and bool(network.get("floods_back_up"))
    losses = witness.losses_since(since)

    def why_not(requirement: str, verdict: str, cut_short_at: int | None = None) -> str | None:
        return cannot_judge(
            requirement,
            verdict,
            kind=kind,
            caps=caps,
            private=private,
            lost=losses,
            floods_back_up=floods_back_up,
            cut_short_at=cut_short_at,
        )

    why = why_not(outcome.requirement, outcome.verdict, outcome.cut_short_at)
    outcome.environment = {**outcome.environment, "witness": caps.describe()}
    if losses:
        outcome.environment["witness_lost"] = losses
    if why is not None:
        seen = outcome.verdict
        outcome.verdict = Verdict.NOT_RUN
        outcome.detail = f"not judged in this mode ({seen} by what it could see): {why}"
    # Other requirements' violations its programs showed: the same rule.
    for finding in getattr(outcome, "findings", ()):
        why = why_not(finding.requirement, finding.verdict)
        if why is not None:
            finding.note = "; ".join(
                filter(None, [finding.note, f"not judged in this mode: {why}"])
            )
            finding.verdict = Verdict.NOT_RUN
    return outcome
