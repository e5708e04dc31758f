"""A quiet controller (SPEC 7.6) never proves life, whatever happens on the line.

Property: after `Connection.go_quiet`, whatever the device sends and whatever the
controller asks (GET_STATUS, STOP, VENT) over any stretch of time, no KEEPALIVE
leaves the controller until it says HELLO again, and the device forgets it within
its watchdog. So a quiet watch can never keep a session alive.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

import firmware_protocol as fp
from firmware_protocol import Connection, LinkState, Role
from tests.firmware_protocol.test_connection import CAPS, IDLE_STATUS, keepalives

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(0.001, 30.0)),
        st.tuples(st.just("ask"), st.sampled_from(["status", "stop", "vent"])),
        st.tuples(st.just("device"), st.sampled_from(["challenge", "status", "ack"])),
    ),
    max_size=40,
)


@given(OPS)
def test_a_quiet_controller_sends_no_keepalive_and_the_device_forgets_it(ops: list) -> None:
    controller, device, now = Connection(Role.CONTROLLER), Connection(Role.DEVICE), 0.0
    controller.send(fp.Hello("quiet"), now)
    device.receive_data(controller.data_to_send(), now)
    [hello] = device.events()
    device.send(replace(CAPS, ref_seq=hello.seq), now)
    controller.receive_data(device.data_to_send(), now)
    controller.events()
    controller.go_quiet()
    sent = bytearray()
    last_ask: int | None = None
    for kind, value in ops:
        if kind == "wait":
            now += value
            for side in (controller, device):
                side.handle_timer(now)  # whatever was due meanwhile (re-sends, the watchdog)
        elif kind == "ask":
            message = {"status": fp.GetStatus(), "stop": fp.Stop(), "vent": fp.Vent()}[value]
            last_ask = controller.send(message, now)
        else:
            if value == "challenge" and device.state == LinkState.READY:
                device.send(fp.Challenge(random.getrandbits(32), round(now * 1000)), now)
            elif value == "status":
                device.send(IDLE_STATUS, now)
            elif value == "ack" and last_ask is not None:
                device.send(fp.Ack(last_ask), now)
        out = controller.data_to_send()
        sent += out
        device.receive_data(out, now)
        controller.receive_data(device.data_to_send(), now)
        controller.events()
        device.events()
        assert controller.quiet
    assert keepalives(bytes(sent)) == []
    now += 1.0
    device.handle_timer(now)
    assert device.state != LinkState.READY  # forgotten: it must say HELLO again
