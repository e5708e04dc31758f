"""A simulated device and a scripted controller on a clock the test drives."""

from __future__ import annotations

from typing import Any

import firmware_protocol as fp
from firmware_protocol import Connection, Received, Replied, Role
from simulator import DeviceConfig, Firmware


class Rig:
    """Firmware plus a controller `Connection`, wired together in memory."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("seed", 1)
        self.fw = Firmware(DeviceConfig(**config), now=0.0)
        self.ctl = Connection(Role.CONTROLLER)
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

    def connect(self) -> fp.Capabilities:
        seq = self.ctl.send(fp.Hello("rig"), self.now)
        self.exchange()
        caps = self.replies[seq]
        assert isinstance(caps, fp.Capabilities)
        return caps

    def command(self, message: fp.Message) -> str:
        """Send one command; ``"ack"`` or ``"nak ERROR_NAME"``."""
        seq = self.ctl.send(message, self.now)
        self.exchange()
        reply = self.replies[seq]
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

    def events_of(self, kind: type) -> list[Any]:
        return [m for m in self.received if isinstance(m, kind)]

    def pressures(self) -> tuple[float, ...]:
        return self.fw.snapshot().pressures_mmhg
