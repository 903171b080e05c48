"""Transaction tables and timers (RFC 3261 section 17, RFC 6026) with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.message import Request, response_to
from gateway.sip.parser import parse_message
from gateway.sip.transaction import (
    T1,
    T2,
    TABLE,
    InvalidTransition,
    Transaction,
    TxEventKind,
    TxInput,
    TxKind,
    TxState,
)
from tests.sip.helpers import invite


def req(method: str = "INVITE") -> Request:
    raw = invite(sdp=None) if method == "INVITE" else invite(sdp=None).replace(b"INVITE", method.encode())
    m = parse_message(raw)
    assert isinstance(m, Request)
    return m


def run_until(tx: Transaction, end: float) -> list[float]:
    """Fire timers up to ``end``; return the times at which something was sent."""
    times = []
    while (t := tx.get_timer()) is not None and t <= end:
        tx.outbox.clear()
        tx.handle_timer(t)
        if tx.outbox:
            times.append(round(t, 3))
    return times


def test_every_row_names_its_rfc_section() -> None:
    assert all(section for _, _, section in TABLE.values())


def test_server_invite_final_retransmits_g_until_h_on_udp() -> None:
    r = req()
    tx = Transaction(TxKind.INVITE_SERVER, r, reliable=False, now=0.0)
    tx.send_response(response_to(r, 486, to_tag="x"), 0.0)
    assert tx.state is TxState.COMPLETED and len(tx.outbox) == 1
    sends = run_until(tx, 64 * T1)
    gaps = [b - a for a, b in zip([0.0, *sends], sends, strict=False)]
    assert gaps[:4] == [T1, 2 * T1, 4 * T1, T2] and max(gaps) == T2  # doubling capped at T2
    assert tx.state is TxState.TERMINATED
    assert any(e.kind is TxEventKind.TIMEOUT for e in tx.events)  # timer H: ACK never came


def test_server_invite_ack_confirms_then_timer_i() -> None:
    r = req()
    tx = Transaction(TxKind.INVITE_SERVER, r, reliable=False, now=0.0)
    tx.send_response(response_to(r, 486, to_tag="x"), 0.0)
    tx.receive_request(req("ACK"), 0.1)
    assert tx.state is TxState.CONFIRMED
    assert run_until(tx, 100) == []  # no more retransmissions
    assert tx.state is TxState.TERMINATED


def test_server_invite_on_stream_has_no_retransmission_and_i_is_zero() -> None:
    r = req()
    tx = Transaction(TxKind.INVITE_SERVER, r, reliable=True, now=0.0)
    tx.send_response(response_to(r, 486, to_tag="x"), 0.0)
    assert tx.get_timer() == 64 * T1  # only H
    tx.receive_request(req("ACK"), 1.0)
    assert tx.state is TxState.TERMINATED


def test_server_invite_2xx_goes_accepted_and_absorbs_retransmissions() -> None:
    r = req()
    tx = Transaction(TxKind.INVITE_SERVER, r, reliable=False, now=0.0)
    tx.send_response(response_to(r, 200, to_tag="x"), 0.0)
    assert tx.state is TxState.ACCEPTED
    tx.outbox.clear()
    tx.receive_request(r, 0.2)
    assert tx.outbox == []  # RFC 6026: the TU retransmits the 2xx, not the transaction
    tx.handle_timer(64 * T1)
    assert tx.state is TxState.TERMINATED


def test_non_invite_server_resends_last_response_and_j() -> None:
    r = req("OPTIONS")
    tx = Transaction(TxKind.NON_INVITE_SERVER, r, reliable=False, now=0.0)
    tx.send_response(response_to(r, 200), 0.0)
    tx.outbox.clear()
    tx.receive_request(r, 1.0)
    assert len(tx.outbox) == 1
    tx.handle_timer(64 * T1)
    assert tx.terminated


def test_client_non_invite_e_backoff_then_f_timeout() -> None:
    r = req("BYE")
    tx = Transaction(TxKind.NON_INVITE_CLIENT, r, reliable=False, now=0.0)
    assert len(tx.outbox) == 1
    sends = run_until(tx, 64 * T1)
    assert sends[:4] == [0.5, 1.5, 3.5, 7.5]
    assert tx.terminated and any(e.kind is TxEventKind.TIMEOUT for e in tx.events)


def test_client_non_invite_response_then_k() -> None:
    r = req("BYE")
    tx = Transaction(TxKind.NON_INVITE_CLIENT, r, reliable=False, now=0.0)
    tx.receive_response(response_to(r, 200, to_tag="t"), 0.1)
    assert tx.state is TxState.COMPLETED
    assert [e.kind for e in tx.events] == [TxEventKind.RESPONSE]
    tx.handle_timer(0.1 + 5.0)
    assert tx.terminated


def test_client_invite_acks_non_2xx_and_reacks_retransmission() -> None:
    r = req()
    tx = Transaction(TxKind.INVITE_CLIENT, r, reliable=False, now=0.0)
    tx.outbox.clear()
    resp = response_to(r, 491, to_tag="t")
    tx.receive_response(resp, 0.1)
    ack = parse_message(tx.outbox[0])
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.method == "ACK"
    assert ack.to.tag == "t" and ack.top_via.branch == r.top_via.branch
    tx.outbox.clear()
    tx.receive_response(resp, 0.3)
    assert len(tx.outbox) == 1  # the retransmitted final is ACKed again
    tx.handle_timer(0.1 + 32.0)
    assert tx.terminated


def test_client_invite_timer_a_doubles_without_cap_and_b_times_out() -> None:
    tx = Transaction(TxKind.INVITE_CLIENT, req(), reliable=False, now=0.0)
    sends = run_until(tx, 64 * T1)
    assert sends[:5] == [0.5, 1.5, 3.5, 7.5, 15.5]
    assert tx.terminated


KIND_INPUTS = {
    TxKind.INVITE_SERVER: [TxInput.REQUEST, TxInput.ACK, TxInput.SEND_1XX, TxInput.SEND_2XX, TxInput.SEND_FINAL],
    TxKind.NON_INVITE_SERVER: [TxInput.REQUEST, TxInput.SEND_1XX, TxInput.SEND_2XX, TxInput.SEND_FINAL],
    TxKind.INVITE_CLIENT: [TxInput.RECV_1XX, TxInput.RECV_2XX, TxInput.RECV_FINAL],
    TxKind.NON_INVITE_CLIENT: [TxInput.RECV_1XX, TxInput.RECV_2XX, TxInput.RECV_FINAL],
}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(TxKind)), reliable=st.booleans(),
       steps=st.lists(st.tuples(st.integers(0, 4), st.floats(0, 40)), max_size=12))
def test_any_input_sequence_keeps_the_machine_in_the_table(kind: TxKind, reliable: bool, steps) -> None:
    r = req("INVITE" if kind in (TxKind.INVITE_SERVER, TxKind.INVITE_CLIENT) else "OPTIONS")
    tx = Transaction(kind, r, reliable=reliable, now=0.0)
    now = 0.0
    inputs = KIND_INPUTS[kind]
    codes = {TxInput.SEND_1XX: 180, TxInput.SEND_2XX: 200, TxInput.SEND_FINAL: 486,
             TxInput.RECV_1XX: 180, TxInput.RECV_2XX: 200, TxInput.RECV_FINAL: 486}
    for idx, dt in steps:
        now += dt
        tx.handle_timer(now)
        inp = inputs[idx % len(inputs)]
        try:
            if inp in (TxInput.REQUEST, TxInput.ACK):
                tx.receive_request(req("ACK") if inp is TxInput.ACK else r, now)
            elif inp.name.startswith("SEND"):
                tx.send_response(response_to(r, codes[inp], to_tag="t"), now)
            else:
                tx.receive_response(response_to(r, codes[inp], to_tag="t"), now)
        except InvalidTransition:
            assert (kind, tx.state, inp) not in TABLE
        if tx.terminated:
            assert tx.get_timer() is None
    # every timer that remains is in the future and fires into a row of the table
    t = tx.get_timer()
    if t is not None:
        tx.handle_timer(t + 1000)
        tx.handle_timer(t + 100000)


@pytest.mark.parametrize("kind", list(TxKind))
def test_terminated_has_no_rows(kind: TxKind) -> None:
    assert not [k for k in TABLE if k[0] is kind and k[1] is TxState.TERMINATED]
