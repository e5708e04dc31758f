"""A simulated device and a scripted controller on a clock the test drives."""

from __future__ import annotations

import itertools
from typing import Any

import firmware_protocol as fp
from firmware_protocol import Connection, Received, Replied, Role
from firmware_protocol.pairing import KeyPair
from simulator import DeviceConfig, Firmware


class Rig:
    """Firmware plus a controller `Connection`, wired together in memory.

    The controller pairs at its first `connect`, as a user's does once, unless
    ``paired=False``: then it stays a stranger to the device.
    """

    def __init__(self, *, paired: bool = True, **config: Any) -> None:
        config.setdefault("seed", 1)
        self.fw = Firmware(DeviceConfig(**config), now=0.0)
        self.ctl = Connection(Role.CONTROLLER)
        self.paired = paired
        self.now = 0.0
        self.received: list[fp.Message] = []
        self.replies: dict[int, fp.Message] = {}

    @property
    def plant(self):
        return self.fw.plant

    def exchange(self) -> None:
        self.fw.receive_data(self.ctl.data_to_send(), self.now)
        self.ctl.receive_data(self.fw.data_to_send(), self.now)
        for event in self.ctl.events():
            if isinstance(event, Replied):
                self.replies[event.seq] = event.reply
            elif isinstance(event, Received):
                self.received.append(event.message)

    def pair(self) -> fp.Signer:
        """Open the device's pairing window, pair, and sign from now on (until `connect`)."""
        self.fw.open_pairing(self.now)
        self._hello()
        ours = KeyPair.generate()
        seq = self.ctl.send(fp.Pair(ours.public, "rig"), self.now)
        self.exchange()
        paired = self.replies[seq]
        assert isinstance(paired, fp.Paired), paired
        key = ours.controller_key(paired)
        counters = itertools.count(1)
        self.ctl.signer = fp.Signer(paired.key_id, key, lambda: next(counters))
        return self.ctl.signer

    def connect(self) -> fp.Capabilities:
        if self.paired and self.ctl.signer is None:
            self.pair()
        return self._hello()

    def _hello(self) -> fp.Capabilities:
        seq = self.ctl.send(fp.Hello("rig"), self.now)
        self.exchange()
        caps = self.replies[seq]
        assert isinstance(caps, fp.Capabilities)
        return caps

    def command(self, message: fp.Message) -> str:
        """Send one command; ``"ack"``, ``"paired"`` or ``"nak ERROR_NAME"``."""
        seq = self.ctl.send(message, self.now)
        self.exchange()
        reply = self.replies[seq]
        if isinstance(reply, fp.Paired):
            return "paired"
        return "ack" if isinstance(reply, fp.Ack) else f"nak {reply.error.name}"  # type: ignore[attr-defined]

    def run(self, seconds: float, *, keepalive: bool = True, step: float = 0.25) -> None:
        """Let time pass; the controller keeps the link alive unless told not to."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(self.now + step, end)
            self.fw.advance(self.now)
            if keepalive:
                self.ctl.handle_timer(self.now)
                self.ctl.events()
            else:
                self.ctl.data_to_send()  # a controller that has gone quiet sends nothing
            self.exchange()
            if keepalive:
                # A live controller answers each STATUS (a challenge) at once (SPEC 7.3).
                self.ctl.handle_timer(self.now)
                self.ctl.events()
                self.exchange()

    def events_of(self, kind: type) -> list[Any]:
        return [m for m in self.received if isinstance(m, kind)]

    def pressures(self) -> tuple[float, ...]:
        return self.fw.snapshot().pressures_mmhg
