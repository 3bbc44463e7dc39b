"""Unit and property tests of the pure protocol model (`spec.model`), no sockets.

Layout:
  * transform
  * diagnose(): what is *not* a violation
  * diagnose(): classification (ECHO-1 / ECHO-2 / ECHO-3 / ECHO-4), each with a
    concrete example and, where natural, a property
  * diagnose(): single random corruptions are always found at the first divergence
  * Connection: the incremental path against diagnose() on the whole streams
  * Violation.describe()
  * regressions: misclassifications the model once made
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from spec.model import (
    CONTEXT,
    MAX_WIDTH,
    MIN_FOREIGN,
    ClientState,
    Connection,
    Violation,
    diagnose,
    transform,
)
from spec.model import IDENTITY as IDENTITY_T
from spec.model import UPPER as UPPER_T
from spec.program import Payload
from spec.requirements import IDS

LOWER = bytes(range(ord("a"), ord("z") + 1))
UPPER = bytes(range(ord("A"), ord("Z") + 1))

# ---------------------------------------------------------------------------
# Helpers and strategies
# ---------------------------------------------------------------------------


def first_mismatch(expected: bytes, received: bytes) -> int:
    """Index of the first position where the streams differ; if one is a prefix
    of the other, the length of the shorter one."""
    for k, (a, b) in enumerate(zip(expected, received, strict=False)):
        if a != b:
            return k
    return min(len(expected), len(received))


def no_adjacent_repeats(data: bytes) -> bytes:
    """Collapse runs: b"aabccc" -> b"abc"."""
    return bytes(k for k, _ in itertools.groupby(data))


def windows(expected: bytes, received: bytes, i: int) -> tuple[bytes, bytes]:
    """The context windows diagnose() reports around divergence offset i."""
    lo = max(0, i - CONTEXT)
    return expected[lo : i + CONTEXT], received[lo : i + CONTEXT]


# ASCII without upper-case letters: transform() is injective on it, so
# "no adjacent repeats in sent" implies "no adjacent repeats in the echo".
ASCII_NO_UPPER = bytes(b for b in range(0x80) if b not in UPPER)

binary = st.binary(max_size=300)
nonempty_binary = st.binary(min_size=1, max_size=300)
ascii_runless = st.binary(min_size=1, max_size=200).map(
    lambda bs: no_adjacent_repeats(bytes(ASCII_NO_UPPER[b % len(ASCII_NO_UPPER)] for b in bs))
)


@st.composite
def corrupted(draw, sent_strategy=nonempty_binary):
    """(sent, received, kind, k): the full echo of `sent` with one corruption at offset k."""
    sent = draw(sent_strategy)
    exp = transform(sent)
    kind = draw(st.sampled_from(["drop", "insert", "substitute", "duplicate"]))
    if kind == "insert":
        k = draw(st.integers(0, len(exp)))
        extra = draw(st.integers(0, 255))
        received = exp[:k] + bytes([extra]) + exp[k:]
    else:
        k = draw(st.integers(0, len(exp) - 1))
        if kind == "drop":
            received = exp[:k] + exp[k + 1 :]
        elif kind == "duplicate":
            received = exp[: k + 1] + exp[k:]
        else:
            new = draw(st.integers(0, 255).filter(lambda b: b != exp[k]))
            received = exp[:k] + bytes([new]) + exp[k + 1 :]
    return sent, received, kind, k


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# ---------------------------------------------------------------------------
# transform
# ---------------------------------------------------------------------------


def test_transform_exhaustive_over_all_256_byte_values():
    for b in range(256):
        out = transform(bytes([b]))
        if ord("a") <= b <= ord("z"):
            assert out == bytes([b - 0x20]), hex(b)
        else:
            assert out == bytes([b]), hex(b)


def test_transform_full_table():
    assert transform(bytes(range(256))) == (bytes(range(0x61)) + UPPER + bytes(range(0x7B, 0x100)))
    assert transform(LOWER) == UPPER
    assert transform(b"") == b""


def test_transform_is_not_text_aware():
    # Latin-1 / UTF-8 letters are bytes like any other: untouched.
    assert transform("àéß".encode()) == "àéß".encode()
    assert transform(b"\xe0\xff\xb5") == b"\xe0\xff\xb5"


def test_transform_accepts_bytes_like():
    assert transform(bytearray(b"ab")) == b"AB"
    assert transform(memoryview(b"ab")) == b"AB"
    assert type(transform(bytearray(b"ab"))) is bytes


@given(binary)
def test_transform_preserves_length(data):
    assert len(transform(data)) == len(data)


@given(binary)
def test_transform_is_idempotent(data):
    assert transform(transform(data)) == transform(data)


@given(binary, binary)
def test_transform_is_bytewise(a, b):
    assert transform(a + b) == transform(a) + transform(b)


@given(binary)
def test_transform_output_has_no_lower_case_letters(data):
    assert not set(transform(data)) & set(LOWER)


# ---------------------------------------------------------------------------
# diagnose(): what is not a violation
# ---------------------------------------------------------------------------


def test_nothing_sent_nothing_received_is_fine():
    assert diagnose(b"", b"") is None
    assert diagnose(b"", b"", settled=True) is None
    assert diagnose(b"", b"", half_closed=True, eof=True, settled=True) is None


@given(binary, st.data())
def test_any_prefix_of_echo_is_fine_while_not_settled(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp)))
    half_closed = data.draw(st.booleans())
    assert diagnose(sent, exp[:k], half_closed=half_closed) is None


@given(binary)
def test_full_echo_on_open_connection_settled_is_fine(sent):
    assert diagnose(sent, transform(sent), settled=True) is None


@given(binary, st.booleans())
def test_full_echo_then_eof_after_half_close_is_fine(sent, settled):
    assert diagnose(sent, transform(sent), half_closed=True, eof=True, settled=settled) is None


@given(binary, st.lists(binary, max_size=4))
def test_correct_echo_is_fine_whatever_the_others(sent, others):
    exp = transform(sent)
    assert diagnose(sent, exp, settled=True, others=[transform(o) for o in others]) is None


# ---------------------------------------------------------------------------
# diagnose(): ECHO-1 (transform)
# ---------------------------------------------------------------------------


def test_untransformed_lower_case_letter_is_echo1_with_offset_and_windows():
    sent = b"the quick brown fox jumps over the lazy dog"
    assert sent[20:21] == b"j"
    received = b"THE QUICK BROWN FOX jUMPS OVER THE LAZY DOG"
    v = diagnose(sent, received)
    assert v is not None
    assert v.requirement == "ECHO-1"
    assert v.offset == 20
    assert "untransformed" in v.summary
    assert "0x6a" in v.summary and "0x4a" in v.summary
    # CONTEXT (12) bytes either side of offset 20: [8, 32)
    assert v.expected == b"K BROWN FOX JUMPS OVER T"
    assert v.received == b"K BROWN FOX jUMPS OVER T"
    assert v.connection is None


def test_untransformed_at_start_window_is_clipped():
    v = diagnose(b"hello", b"hELLO")
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-1", 0)
    assert (v.expected, v.received) == (b"HELLO", b"hELLO")


@given(st.data())
def test_property_untransformed_letter_is_echo1_at_its_offset(data):
    sent = data.draw(st.binary(max_size=200))
    k = data.draw(st.integers(0, len(sent)))
    letter = data.draw(st.sampled_from(LOWER))
    sent = sent[:k] + bytes([letter]) + sent[k:]
    exp = transform(sent)
    tail = data.draw(st.integers(k + 1, len(exp)))  # how much the client has read
    received = (exp[:k] + bytes([letter]) + exp[k + 1 :])[:tail]
    v = diagnose(sent, received)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-1", k)
    assert "untransformed" in v.summary
    assert (v.expected, v.received) == windows(exp, received, k)


def test_substituted_byte_is_echo1():
    v = diagnose(b"hello world", b"HELXO WORLD")
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-1", 3)
    assert "came back as 0x58" in v.summary
    assert (v.expected, v.received) == (b"HELLO WORLD", b"HELXO WORLD")


@given(st.data())
def test_property_one_substituted_byte_in_whole_stream_is_echo1(data):
    sent = data.draw(nonempty_binary)
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != exp[k]))
    received = exp[:k] + bytes([new]) + exp[k + 1 :]
    v = diagnose(sent, received, settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-1", k)
    assert (v.expected, v.received) == windows(exp, received, k)


def test_non_ascii_divergence_is_attributed_to_the_transform():
    # A non-ASCII byte that is simply lost is ECHO-2 (the zoo's ECHO-2 defects
    # lose random flood bytes); one turned into something else that no shift
    # explains is what a server that decodes text does: ECHO-1.
    v = diagnose(b"a\xffb", b"AB", settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 1)
    v = diagnose(b"a\xffb", b"A\xef\xbf\xbdB", settled=True)  # UTF-8, errors="replace"
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-1", 1)
    v = diagnose(b"\xe9t\xe9", "\xe9T\xe9".encode(), settled=True)  # latin-1 -> utf-8
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-1", 0)


# ---------------------------------------------------------------------------
# diagnose(): ECHO-2 (stream integrity)
# ---------------------------------------------------------------------------


def test_byte_dropped_in_the_middle_is_echo2_at_its_offset():
    v = diagnose(b"abcdefghij", b"ABCDFGHIJ", settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 4)
    assert "b'E') is missing from the echo" in v.summary
    assert (v.expected, v.received) == (b"ABCDEFGHIJ", b"ABCDFGHIJ")


def test_dropped_byte_in_a_run_is_located_at_the_end_of_the_run():
    # The drop cannot be located inside a run: dropping the first or the
    # second "a" gives the same stream.  The model reports the first offset at
    # which the evidence diverges, which is *after* the dropped byte.
    v = diagnose(b"aab", b"AB", settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 1)


@given(ascii_runless, st.data())
def test_property_dropped_byte_is_echo2_at_its_offset(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    received = exp[:k] + exp[k + 1 :]
    v = diagnose(sent, received, settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", k)


def test_duplicated_byte_is_echo2():
    v = diagnose(b"abcdef", b"ABCCDEF", settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 3)


@given(ascii_runless, st.data())
def test_property_duplicated_byte_is_echo2_just_after_it(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    received = exp[: k + 1] + exp[k:]
    v = diagnose(sent, received, settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", k + 1)


def test_extra_bytes_appended_is_echo2_with_the_count():
    v = diagnose(b"hello", b"HELLOHELLO")
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 5)
    assert "5 bytes more" in v.summary
    assert (v.expected, v.received) == (b"HELLO", b"HELLOHELLO")


@given(binary, st.binary(min_size=1, max_size=50), st.booleans())
def test_property_extra_bytes_after_full_echo_is_echo2(sent, extra, settled):
    exp = transform(sent)
    v = diagnose(sent, exp + extra, settled=settled)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", len(exp))
    assert f"received {len(extra)} bytes more" in v.summary


def test_reordered_chunks_are_echo2():
    v = diagnose(b"hello world", b"WORLDHELLO ", settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 0)


@given(
    st.binary(min_size=1, max_size=60).map(
        lambda b: no_adjacent_repeats(bytes(LOWER[x % 13] for x in b))
    ),  # a..m
    st.binary(min_size=1, max_size=60).map(
        lambda b: no_adjacent_repeats(bytes(LOWER[13 + x % 13] for x in b))
    ),  # n..z
)
def test_property_swapped_chunks_are_echo2(a, b):
    sent = a + b
    received = transform(b) + transform(a)
    v = diagnose(sent, received, settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 0)


def test_settled_with_missing_echo_on_open_connection_is_echo2_with_count():
    v = diagnose(b"hello world", b"HELLO", settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 5)
    assert v.summary.startswith("6 echo bytes never arrived")
    assert "after 5 of 11 echo bytes" in v.summary
    assert (v.expected, v.received) == (b" WORLD", b"")


@given(nonempty_binary, st.data())
def test_property_settled_missing_echo_open_is_echo2(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    v = diagnose(sent, exp[:k], settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", k)
    assert v.summary.startswith(f"{len(exp) - k} echo bytes never arrived")
    assert "half-close" not in v.summary
    assert (v.expected, v.received) == (exp[k : k + CONTEXT], b"")


def test_eof_on_connection_not_half_closed_is_echo2():
    v = diagnose(b"hello", b"HELLO", eof=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 5)
    assert "closed a connection the client had not closed" in v.summary


@given(binary, st.data())
def test_property_eof_without_half_close_is_echo2(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp)))
    v = diagnose(sent, exp[:k], eof=True, settled=data.draw(st.booleans()))
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", k)


def test_reset_not_caused_by_client_is_echo2():
    v = diagnose(b"hello", b"HE", reset=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-2", 2)
    assert "reset a connection the client had not closed" in v.summary
    assert "after 2 of 5 echo bytes" in v.summary


@given(binary, st.data())
def test_property_reset_is_echo2_or_echo4_after_half_close(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp)))
    half_closed = data.draw(st.booleans())
    v = diagnose(
        sent,
        exp[:k],
        reset=True,
        half_closed=half_closed,
        eof=data.draw(st.booleans()),
        settled=data.draw(st.booleans()),
    )
    assert v is not None
    assert v.requirement == ("ECHO-4" if half_closed else "ECHO-2")
    assert v.offset == k
    assert "reset" in v.summary


# ---------------------------------------------------------------------------
# diagnose(): ECHO-3 (isolation)
# ---------------------------------------------------------------------------


def test_bytes_of_another_connection_are_echo3():
    other = transform(b"the other client's secret")
    v = diagnose(b"hello world", b"HELLO SECRET", others=[other])
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-3", 6)
    assert "another connection" in v.summary
    assert (v.expected, v.received) == (b"HELLO WORLD", b"HELLO SECRET")


def test_other_connections_bytes_appended_after_full_echo_are_echo3():
    v = diagnose(b"hi", b"HIYO", others=[b"YO"], settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-3", 2)


def test_without_others_the_same_bytes_are_not_echo3():
    v = diagnose(b"hello world", b"HELLO SECRET")
    assert v is not None
    assert v.requirement != "ECHO-3"


def test_bytes_that_also_occur_in_own_echo_are_not_echo3():
    # Duplicating own bytes is ECHO-2 even if another connection sent the same.
    v = diagnose(b"hello", b"HELLOHELLO", others=[b"HELLO"])
    assert v is not None
    assert v.requirement == "ECHO-2"


@given(
    st.binary(max_size=80).map(lambda b: bytes(LOWER[x % 26] for x in b)),  # letters
    st.binary(min_size=1, max_size=80).map(lambda b: bytes(0x30 + x % 10 for x in b)),  # digits
    st.data(),
)
def test_property_foreign_bytes_are_echo3(sent, other_sent, data):
    exp, other = transform(sent), transform(other_sent)
    k = data.draw(st.integers(0, len(exp)))
    j = data.draw(st.integers(0, len(other) - 1))
    m = data.draw(st.integers(1, len(other) - j))
    # Too few stray bytes are not evidence (any byte value occurs somewhere),
    # unless they are another connection's whole echo.
    assume(m >= MIN_FOREIGN or (j, m) == (0, len(other)))
    received = exp[:k] + other[j : j + m]
    v = diagnose(sent, received, others=[b"unrelated", other])
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-3", k)


# ---------------------------------------------------------------------------
# diagnose(): ECHO-4 (half-close)
# ---------------------------------------------------------------------------


def test_settled_missing_echo_after_half_close_is_echo4():
    v = diagnose(b"hello world", b"HELLO", half_closed=True, settled=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-4", 5)
    assert v.summary.startswith("6 echo bytes after half-close never arrived")
    assert (v.expected, v.received) == (b" WORLD", b"")


def test_eof_before_all_echo_after_half_close_is_echo4():
    v = diagnose(b"hello world", b"HEL", half_closed=True, eof=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-4", 3)
    assert "with 8 echo bytes undelivered" in v.summary
    assert (v.expected, v.received) == (b"LO WORLD", b"")


@given(nonempty_binary, st.data())
def test_property_missing_echo_after_half_close_is_echo4(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    eof = data.draw(st.booleans())
    settled = True if not eof else data.draw(st.booleans())
    v = diagnose(sent, exp[:k], half_closed=True, eof=eof, settled=settled)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-4", k)
    assert f"{len(exp) - k} echo bytes" in v.summary
    assert (v.expected, v.received) == (exp[k : k + CONTEXT], b"")


def test_reset_after_half_close_is_echo4():
    v = diagnose(b"hello", b"HELLO", half_closed=True, reset=True)
    assert v is not None
    assert (v.requirement, v.offset) == ("ECHO-4", 5)
    assert "reset the connection after half-close" in v.summary


def test_half_closed_full_echo_settled_without_eof_is_echo4_no_eof():
    v = diagnose(b"hello", b"HELLO", half_closed=True, settled=True)
    assert v is not None
    assert v.requirement == "ECHO-4"
    assert v.summary.startswith("no EOF after half-close")
    assert "after 5 of 5 echo bytes" in v.summary
    assert v.offset is None and v.expected is None and v.received is None


@given(binary)
def test_property_half_closed_no_eof_is_fine_until_settled(sent):
    exp = transform(sent)
    assert diagnose(sent, exp, half_closed=True) is None
    v = diagnose(sent, exp, half_closed=True, settled=True)
    assert v is not None and v.requirement == "ECHO-4"


# ---------------------------------------------------------------------------
# diagnose(): precedence and general properties
# ---------------------------------------------------------------------------


def test_content_divergence_is_reported_before_eof_or_reset():
    for flags in ({"eof": True}, {"reset": True}, {"half_closed": True, "settled": True}):
        v = diagnose(b"hello", b"HELXO", **flags)
        assert v is not None
        assert (v.requirement, v.offset) == ("ECHO-1", 3), flags


@given(binary, binary, st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_property_diagnosis_is_well_formed(sent, received, eof, reset, half_closed, settled):
    v = diagnose(sent, received, eof=eof, reset=reset, half_closed=half_closed, settled=settled)
    if v is None:
        return
    assert v.requirement in IDS
    assert v.requirement in {"ECHO-1", "ECHO-2", "ECHO-3", "ECHO-4"}
    assert v.connection is None
    assert v.summary
    if v.offset is not None:
        exp = transform(sent)
        # The offset is the FIRST divergence: everything before it was right.
        assert 0 <= v.offset <= len(received)
        assert received[: v.offset] == exp[: v.offset]


@given(corrupted())
def test_property_single_corruption_found_at_first_divergence(case):
    sent, received, kind, k = case
    exp = transform(sent)
    v = diagnose(sent, received, settled=True)
    assert v is not None, kind
    assert v.offset is not None
    # Exactly the first byte at which the evidence diverges ...
    assert v.offset == first_mismatch(exp, received)
    assert received[: v.offset] == exp[: v.offset]
    # ... which is never before the corruption (a drop/insert inside a run of
    # equal bytes only becomes visible at the end of the run) ...
    assert v.offset >= k
    # ... and, for a substitution, exactly at it.
    if kind == "substitute":
        assert v.offset == k
    assert v.requirement in {"ECHO-1", "ECHO-2"}


@given(corrupted(ascii_runless))
def test_property_single_corruption_without_runs_is_located_exactly(case):
    sent, received, kind, k = case
    v = diagnose(sent, received, settled=True)
    assert v is not None
    exact = {"drop": k, "substitute": k, "duplicate": k + 1}.get(kind)
    if exact is not None:
        assert v.offset == exact
    else:  # insert: visible at k, or at k + 1 if the inserted byte equals the one at k
        assert v.offset in (k, k + 1)


@given(binary, st.data())
def test_property_correct_prefix_never_diagnosed(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp)))
    others = data.draw(st.lists(st.binary(max_size=40), max_size=3))
    assert diagnose(sent, exp[:k], others=[transform(o) for o in others]) is None


# ---------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------


def test_connection_counts():
    c = Connection("c1")
    assert (c.received_count, c.outstanding) == (0, 0)
    c.record_sent(b"hello ")
    c.record_sent(b"world")
    assert bytes(c.sent) == b"hello world"
    assert bytes(c.expected) == b"HELLO WORLD"
    assert c.outstanding == 11
    assert c.record_received(b"HEL") is None
    assert c.record_received(b"LO W") is None
    assert (c.received_count, c.outstanding) == (7, 4)
    assert c.record_received(b"ORLD") is None
    assert (c.received_count, c.outstanding) == (11, 0)
    assert c.diagnose(settled=True) is None


def test_connection_empty_chunk_is_fine():
    c = Connection("c1")
    c.record_sent(b"ab")
    assert c.record_received(b"") is None
    assert c.received_count == 0


@pytest.mark.parametrize(
    ("state", "eof", "ended"),
    [
        (ClientState.OPEN, False, False),
        (ClientState.HALF_CLOSED, False, False),
        (ClientState.HALF_CLOSED, True, True),
        (ClientState.CLOSED, False, True),
        (ClientState.ABORTED, False, True),
    ],
)
def test_connection_ended(state, eof, ended):
    c = Connection("c1", state=state, eof=eof)
    assert c.ended is ended
    assert c.half_closed is (state is ClientState.HALF_CLOSED)


def test_connection_first_bad_chunk_returns_named_violation():
    c = Connection("conn-7")
    c.record_sent(b"hello world")
    assert c.record_received(b"HELLO") is None
    v = c.record_received(b" WoRLD")
    assert v is not None
    assert v.connection == "conn-7"
    assert (v.requirement, v.offset) == ("ECHO-1", 7)
    assert "on conn-7" in v.describe()
    assert c.received_count == 11


def test_connection_extra_bytes_chunk():
    c = Connection("c")
    c.record_sent(b"ab")
    v = c.record_received(b"ABC")
    assert v is not None
    assert (v.requirement, v.offset, v.connection) == ("ECHO-2", 2, "c")


def test_connection_foreign_chunk_is_echo3():
    c = Connection("c")
    c.record_sent(b"hello")
    v = c.record_received(b"12345", others=[b"0123456789"])
    assert v is not None
    assert (v.requirement, v.offset, v.connection) == ("ECHO-3", 0, "c")


def test_connection_diagnose_uses_its_state():
    c = Connection("c")
    c.record_sent(b"hello")
    c.record_received(b"HEL")
    assert c.diagnose() is None
    v = c.diagnose(settled=True)
    assert v is not None and (v.requirement, v.offset, v.connection) == ("ECHO-2", 3, "c")
    c.state = ClientState.HALF_CLOSED
    v = c.diagnose(settled=True)
    assert v is not None and (v.requirement, v.connection) == ("ECHO-4", "c")
    c.record_received(b"LO")
    v = c.diagnose(settled=True)
    assert v is not None and v.summary.startswith("no EOF")
    c.eof = True
    assert c.diagnose(settled=True) is None
    assert c.ended
    c.reset = True
    v = c.diagnose()
    assert v is not None and (v.requirement, v.connection) == ("ECHO-4", "c")


def test_connection_server_eof_on_open_connection():
    c = Connection("c", eof=True)
    c.record_sent(b"x")
    v = c.diagnose()
    assert v is not None and (v.requirement, v.connection) == ("ECHO-2", "c")


@given(st.lists(binary, max_size=8), st.data())
def test_property_incremental_agrees_with_diagnose_on_correct_streams(chunks, data):
    """Interleave sends and partial reads of a correct echo; the Connection's
    view always equals diagnose() on the whole streams so far."""
    c = Connection("c")
    sent, received = b"", b""
    for chunk in chunks:
        c.record_sent(chunk)
        sent += chunk
        exp = transform(sent)
        upto = data.draw(st.integers(len(received), len(exp)))
        cuts = data.draw(st.lists(st.integers(0, 1000), max_size=3))
        for piece in split(exp[len(received) : upto], cuts):
            assert c.record_received(piece) is None
            received += piece
        assert c.received_count == len(received)
        assert c.outstanding == len(exp) - len(received)
        assert bytes(c.sent) == sent and bytes(c.expected) == exp
        for settled in (False, True):
            whole = diagnose(sent, received, settled=settled)
            mine = c.diagnose(settled=settled)
            if whole is None:
                assert mine is None
            else:
                assert mine == dataclasses.replace(whole, connection="c")


@given(corrupted(), st.lists(st.integers(0, 1000), max_size=5), st.lists(binary, max_size=2))
def test_property_incremental_flags_first_bad_chunk_like_diagnose(case, cuts, others_raw):
    sent, received, _kind, _k = case
    others = [transform(o) for o in others_raw]
    c = Connection("c")
    for piece in split(sent, cuts):
        c.record_sent(piece)
    so_far = b""
    first = None
    for piece in split(received, cuts[::-1]):
        so_far += piece
        first = c.record_received(piece, others=others)
        if first is not None:
            break
    assert c.received_count == len(so_far)
    whole = diagnose(sent, received, others=others)  # content divergence only
    if whole is None:
        # received is a correct prefix (e.g. the last byte was dropped)
        assert first is None
        return
    assert first is not None
    assert first.connection == "c"
    # Same first divergent byte as the whole-stream diagnosis ...
    assert first.offset == whole.offset
    # ... and exactly the diagnosis of the streams as they stood at that chunk.
    assert first == dataclasses.replace(diagnose(sent, so_far, others=others), connection="c")


# ---------------------------------------------------------------------------
# Violation.describe()
# ---------------------------------------------------------------------------


def test_describe_full():
    v = Violation(
        "ECHO-1",
        "byte came back wrong",
        offset=3,
        expected=b"HELLO",
        received=b"HELXO",
        connection="c1",
    )
    assert v.describe() == (
        "ECHO-1: byte came back wrong on c1\n"
        "  first divergent byte at offset 3\n"
        "  expected: b'HELLO'\n"
        "  received: b'HELXO'"
    )
    assert str(v) == v.describe()


def test_describe_minimal_and_empty_windows():
    assert Violation("ECHO-4", "no EOF").describe() == "ECHO-4: no EOF"
    v = Violation("ECHO-2", "lost", offset=0, expected=b"AB", received=b"")
    text = v.describe()
    assert "offset 0" in text
    assert "received: (nothing)" in text
    assert "expected: b'AB'" in text


@given(corrupted())
def test_property_describe_has_id_offset_and_both_windows(case):
    sent, received, _kind, _k = case
    v = diagnose(sent, received, settled=True)
    assert v is not None
    text = v.describe()
    assert text.startswith(v.requirement + ": ")
    assert f"offset {v.offset}" in text
    assert v.expected is not None and v.received is not None
    shown_exp = repr(bytes(v.expected)) if v.expected else "(nothing)"
    shown_rcv = repr(bytes(v.received)) if v.received else "(nothing)"
    assert f"\n  expected: {shown_exp}" in text
    assert f"\n  received: {shown_rcv}" in text


# ---------------------------------------------------------------------------
# Defects the model once had, kept as regression tests.
# ---------------------------------------------------------------------------


def test_connection_diagnose_after_bad_chunk_still_reports():
    c = Connection("c")
    c.record_sent(b"hello")
    assert c.record_received(b"HELXO") is not None
    assert c.diagnose(settled=True) is not None


def test_connection_later_chunks_do_not_invent_new_offsets():
    c = Connection("c")
    c.record_sent(b"abcdef")
    assert c.record_received(b"AB") is None
    first = c.record_received(b"D")  # C dropped
    assert first is not None and first.offset == 2
    later = c.record_received(b"EF")
    assert later is None or later.offset == first.offset


def test_incremental_classification_independent_of_read_chunking():
    sent = b"hello world"
    whole = diagnose(sent, b"HELLX WORLD")
    assert whole is not None and whole.requirement == "ECHO-1"
    c = Connection("c")
    c.record_sent(sent)
    assert c.record_received(b"HELLX") is not None
    assert c.gathering  # too few bytes after the divergence to name it
    v = c.record_received(b" WORLD")
    assert v is not None
    assert (v.requirement, v.summary) == (whole.requirement, whole.summary)


def test_single_stray_byte_is_not_attributed_to_another_connection():
    other = transform(bytes(range(256)))  # a peer that sent every byte value
    v = diagnose(b"hello", b"HELLX", others=[other])
    assert v is not None
    assert v.requirement == "ECHO-1"  # as without `others`
    assert diagnose(b"hello", b"HELLX").requirement == "ECHO-1"


def test_duplicate_before_a_run_is_echo2():
    v = diagnose(b"a" + b"b" * 20, b"AA" + b"B" * 20, settled=True)
    assert v is not None
    assert v.requirement == "ECHO-2"


def test_a_chunk_echoed_out_of_order_is_echo2_not_echo1():
    """A LIFO queue sends later echo first: each received byte is a correct
    transform of a byte sent elsewhere, so the stream is out of order (ECHO-2)."""
    sent = bytes(range(0x80, 0x100)) + bytes(range(0x80))
    expected = transform(sent)
    v = diagnose(sent, expected[128:] + expected[:128], settled=True)
    assert v is not None and v.requirement == "ECHO-2"
    assert "reordered" in v.summary


def test_one_wrong_byte_value_is_still_echo1():
    sent = bytes(range(0x80, 0x100))
    received = bytearray(transform(sent))
    received[7] ^= 0x40
    v = diagnose(sent, bytes(received), settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-1", 7)


def test_short_chunks_out_of_order_are_echo2_not_echo1():
    """Two one-byte writes echoed last first: each byte is a right transform, misplaced."""
    sent = b"\xf6\x4c"
    v = diagnose(sent, transform(sent)[::-1], settled=True)
    assert v is not None and v.requirement == "ECHO-2", v


# ---------------------------------------------------------------------------
# Naming the fault: where the stream realigns (issue 20)
# ---------------------------------------------------------------------------


def test_bytes_lost_after_a_nul_are_echo2_lost_not_a_transform():
    """A C server that writes strlen(buf) bytes drops what follows a NUL."""
    v = diagnose(b"hello\x00world and more text", b"HELLOAND MORE TEXT", settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", 5)
    assert "7 bytes of the echo" in v.summary and "lost" in v.summary


def test_stack_bytes_written_past_the_data_are_echo2_inserted():
    """...and over-reads its buffer where there is none: bytes nobody sent."""
    v = diagnose(b"hello world and more", b"HELLO\x02\xaa\x13\x00 WORLD AND MORE", settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", 5)
    assert "4 bytes" in v.summary and "inserted" in v.summary
    assert "not the echo of any byte sent" in v.summary


def test_a_repeated_run_is_named_duplicated():
    sent = b"abcdefghijklmnopqrstuvwxyz"
    v = diagnose(sent, b"ABCDEFGHIJKLMNOPQRSTABCDEFGHIJUVWXYZ", settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", 20)
    assert "10 bytes" in v.summary and "duplicated" in v.summary


@given(ascii_runless, st.binary(min_size=1, max_size=60), st.data())
def test_property_an_inserted_run_is_echo2_at_its_offset(sent, run, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    assume(run[0] != exp[k] and run[0] != sent[k])
    v = diagnose(sent, exp[:k] + run + exp[k:], settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", k)


@given(ascii_runless, st.data())
def test_property_a_lost_run_is_echo2_at_its_offset(sent, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    n = data.draw(st.integers(1, len(exp) - k))
    received = exp[:k] + exp[k + n :]
    # The run is named where the streams first differ: b"\x00\x01\x00" less
    # its first two bytes is the same stream as less its last two.
    first = k
    while first < len(received) and received[first] == exp[first]:
        first += 1
    v = diagnose(sent, received, settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", first)


@given(
    ascii_runless,
    st.sampled_from(["insert", "drop", "substitute"]),
    st.data(),
)
def test_property_the_diagnosis_does_not_depend_on_where_reads_end(sent, kind, data):
    """However the received stream is cut into reads, a connection that has
    read it all names the same fault (the same seed gave {ECHO-2}, then
    {ECHO-1, ECHO-2}, when a read happened to end just after a wrong byte)."""
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    wrong = bytes([exp[k] ^ 0x55])
    received = {
        "insert": exp[:k] + wrong * 3 + exp[k:],
        "drop": exp[:k] + exp[k + 2 :],
        "substitute": exp[:k] + wrong + exp[k + 1 :],
    }[kind]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(received) - 1)), max_size=6)))
    c = Connection("c")
    c.record_sent(sent)
    for a, b in itertools.pairwise([0, *cuts, len(received)]):
        c.record_received(received[a:b])
    whole = diagnose(sent, received, settled=True)
    got = c.diagnose(settled=True)
    if whole is None:
        assert got is None
        return
    assert got is not None
    assert (got.requirement, got.offset, got.summary) == (
        whole.requirement,
        whole.offset,
        whole.summary,
    )


def test_an_uppercasing_server_checked_as_a_plain_echo_is_echo1() -> None:
    """Under identity, every letter comes back changed, each at its own offset."""
    from spec.model import IDENTITY

    v = diagnose(b"hello world", b"HELLO WORLD", settled=True, transform=IDENTITY)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-1", 0)
    assert "changed the same way" in v.summary


def test_stale_bytes_then_more_past_the_end_of_the_echo_are_echo2_inserted():
    """The strlen server's static buffer, seen in CI: a stale byte inserted,
    the rest of the echo, then more stale bytes.  The stream never realigns
    *and ends* where the echo does, so it was named a wrong transform of the
    non-ASCII byte at the divergence (ECHO-1)."""
    v = diagnose(b"!dlm\x9f\xfe\xdd,", b"!DLM\x9f\xfe\xd2\xdd,LM\x9f\xfe\xd2", settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", 6), v
    assert "byte 0xd2" in v.summary and "inserted" in v.summary, v.summary


def test_stale_bytes_around_the_last_echo_byte_are_not_a_decoder():
    """Seen on the strlen server: its last echo byte came back between two stale
    ones.  Read as one block, 0x80 grew into three bytes, which a text
    decoder would do (ECHO-1), but a decoder writes UTF-8, and 0x9c after a
    newline begins no character: stale bytes inserted (ECHO-2)."""
    v = diagnose(b"s\xd9\x9c\n\x80", b"S\xd9\x9c\n\x9c\x80\x9c", settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", 4), v


@given(ascii_runless, st.binary(min_size=1, max_size=8), st.binary(min_size=1), st.data())
def test_property_an_insertion_followed_by_bytes_past_the_echo_is_echo2(sent, run, tail, data):
    exp = transform(sent)
    k = data.draw(st.integers(0, len(exp) - 1))
    assume(run[0] != exp[k] and run[0] != sent[k])
    # No other reading of the same bytes: the stream cannot realign and end
    # where the echo does (it ends in a byte the echo never holds), nor is it
    # the echo's last bytes turned into up to MAX_WIDTH others.
    assume(tail[-1] not in exp)
    assume(len(run) + len(exp) - k + len(tail) > MAX_WIDTH)
    v = diagnose(sent, exp[:k] + run + exp[k:] + tail, settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-2", k), v


@pytest.mark.parametrize(
    ("sent", "received", "transform"),
    [
        (b"\xe9a\xe9a", b"\xef\xbf\xbdA\xef\xbf\xbdA", UPPER_T),  # decoded, U+FFFD
        (b"\xdf\xc3\xdf\xc3", b"SS\xc3SS\xc3", UPPER_T),  # latin-1 str.upper()
        (b"\xc3\xa9\xe9\xa9\xc3\xa9", b"\xc3\x89\xe9\xa9\xc3\x89", UPPER_T),  # surrogateescape
        (b"ab1 cd 1", b"AB1 CD 1", IDENTITY_T),  # uppercased, checked as a plain echo
    ],
    ids=["decode-replace", "latin1-upper", "surrogateescape-upper", "upper-as-identity"],
)
def test_a_wrong_transform_whose_echo_recurs_later_stays_echo1(sent, received, transform):
    """The echo's last bytes recurring in a wrongly transformed stream are no
    realignment: found in review, these were named "lost and inserted" (ECHO-2)."""
    v = diagnose(sent, received, settled=True, transform=transform)
    echo = transform(sent)
    first = next(i for i in range(len(echo)) if echo[i : i + 1] != received[i : i + 1])
    assert v is not None and (v.requirement, v.offset) == ("ECHO-1", first), v


def test_several_wrong_transforms_close_together_are_echo1() -> None:
    """A Latin-1 case-mapping server (zoo latin1-str-upper) changes two bytes
    four apart: they were named "3 bytes of the echo came back as 3 other
    bytes (lost and inserted)", and the server failed ECHO-2 too."""
    sent = b"*\x0f\x90\xe1liq\x0e\xfa\x89\xa0zv\x81l"
    received = b"*\x0f\x90\xc1LIQ\x0e\xda\x89\xa0ZV\x81L"
    v = diagnose(sent, received, settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-1", 3), v


def test_a_few_wrong_transforms_in_a_flood_are_not_reordered_bytes() -> None:
    """Over a flood's megabytes every byte value is owed somewhere: that the
    received bytes all occur in the echo says nothing about their order."""
    sent = Payload(b"*", 1 << 20).data()
    expected = UPPER_T(sent)
    k = next(i for i in range(100, len(sent)) if sent[i] >= 0x80 and sent[i + 3] >= 0x80)
    received = bytearray(expected)
    received[k] ^= 0x20  # two bytes changed where they stand, too close to realign between
    received[k + 3] ^= 0x20
    received = bytes(received)
    v = diagnose(sent, received, settled=True)
    assert v is not None and (v.requirement, v.offset) == ("ECHO-1", k), v


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        (b"a\xefb", b"A\xef\xbf\xbdB"),  # U+FFFD whose first byte is the echo owed
        (b"x\xe2\xb1\xa5y", b"X\xc8\xbaY"),  # U+2C65 upper-cased to U+023A: 3 bytes as 2
    ],
    ids=["replacement-after-0xef", "three-bytes-as-two"],
)
def test_text_decoding_that_changes_lengths_is_echo1(sent: bytes, received: bytes) -> None:
    v = diagnose(sent, received, settled=True)
    assert v is not None and v.requirement == "ECHO-1", v


@given(st.binary(min_size=1, max_size=300), st.data())
def test_property_latin1_case_mapping_is_always_echo1(sent, data):
    """A server that upper-cases Latin-1 text changes bytes where they stand: ECHO-1, never a
    stream fault, however many and however close together."""
    received = sent.decode("latin-1").upper().encode("latin-1", "replace")
    assume(received != UPPER_T(sent))
    v = diagnose(sent, received, settled=True)
    assert v is not None and v.requirement == "ECHO-1", v
