"""``link-noise``: a served device whose link damages bytes, for ``massager-sim serve``.

Not a hardware fault (`simulator.faults` names those, and takes ``link-noise``
among them on the command line): the plant and the firmware are sound, and the
bytes are damaged at the device's end of the link, both ways. The protocol's checksums
and retransmissions must cope.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .host import DeviceHost

LINK_ERROR_RATE = 0.002
"""With link-noise, the chance that a byte is damaged (one bit flipped), and again that one is
lost: about one frame in ten arrives damaged."""


class NoisyHost(DeviceHost):
    """A `DeviceHost` whose link damages bytes both ways, from ``start_s`` device seconds on.

    Each byte is, independently, lost or has one bit flipped, each with
    probability ``error_rate``: what a long cable near a motor does.
    """

    def __init__(
        self,
        *args: object,
        start_s: float = 0.0,
        error_rate: float = LINK_ERROR_RATE,
        seed: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.start_s = start_s
        self.error_rate = error_rate
        self.damaged = 0
        """Bytes damaged or lost so far, both ways."""
        self._rng = random.Random(seed)

    def feed(self, data: bytes) -> None:
        """Bytes arrive from the link, after the noise had its way with them."""
        super().feed(self._noise(data))

    def attach(self, on_bytes: Callable[[bytes], None]) -> None:
        """Connect a link; what the device sends is damaged on its way to ``on_bytes``."""
        super().attach(lambda data: on_bytes(self._noise(data)))

    def _noise(self, data: bytes) -> bytes:
        if not self.running or self.firmware.plant.clock < self.start_s:
            return data
        rate, draw = self.error_rate, self._rng.random
        out = bytearray()
        for byte in data:
            if draw() < rate:
                self.damaged += 1
                continue
            if draw() < rate:
                self.damaged += 1
                byte ^= 1 << self._rng.randrange(8)
            out.append(byte)
        return bytes(out)
