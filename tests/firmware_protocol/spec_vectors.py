"""The test vectors of SPEC.md, defined once.

``python -m tests.firmware_protocol.spec_vectors`` prints the vectors section of
SPEC.md from these definitions, and ``--write`` puts it into SPEC.md.
test_spec_vectors.py parses SPEC.md itself and checks every vector in both
directions, so the document cannot drift from the code.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import firmware_protocol as fp
from firmware_protocol import cobs
from firmware_protocol.connection import REPLY_CACHE_SIZE
from firmware_protocol.pairing import SALT, KeyPair

KEY = bytes(range(32))
"""The example key of the authenticated vector: bytes 00 01 02 ... 1f."""
NONCE = bytes.fromhex("a0a1a2a3a4a5a6a7")
"""The example link nonce, as a device's CAPABILITIES gives it."""
DEVICE_CONTEXT = (8).to_bytes(4, "little") + NONCE
"""What a device's tag covers first on the example link: the HELLO's counter (8), the nonce."""


@dataclass(frozen=True)
class Vector:
    name: str
    direction: str
    seq: int
    message: str
    counter: int | None = None
    nonce: bytes = b""

    def build(self) -> fp.Message:
        return eval(self.message, vars(fp))

    def frame(self) -> fp.Frame:
        msg = self.build()
        frame = fp.Frame(self.seq, msg.TYPE, msg.encode_payload())
        if self.counter is not None:
            frame = frame.signed(KEY, self.counter, self.nonce)
        return frame


C2D, D2C = "controller -> device", "device -> controller"

VECTORS = [
    Vector("HELLO", C2D, 1, 'Hello(client_name="massager-ctl")'),
    Vector(
        "CAPABILITIES",
        D2C,
        1,
        'Capabilities(ref_seq=1, model="AirLeg", firmware="1.0", serial="A1", '
        "features=Feature.CYCLE | Feature.BATTERY | Feature.REMOTE, "
        "ceiling_dmmhg=1300, max_target_dmmhg=1200, session_cap_s=5400, max_lease_s=5400, "
        "watchdog_ms=1000, status_interval_ms=500, pause_limit_s=600, "
        "chambers=(ChamberInfo(Leg.LEFT, Position.FOOT), ChamberInfo(Leg.LEFT, Position.CALF), "
        "ChamberInfo(Leg.RIGHT, Position.FOOT), ChamberInfo(Leg.RIGHT, Position.CALF)), "
        'modes=(ModeInfo(Mode.WAVE, "wave"), ModeInfo(Mode.PULSE, "pulse"), '
        'ModeInfo(Mode.CYCLE, "cycle")), '
        "levels=(LevelInfo(1, 500), LevelInfo(2, 800), LevelInfo(3, 1100)))",
    ),
    Vector("START", C2D, 2, "Start(mode=Mode.WAVE, intensity=2, lease_s=900)"),
    Vector("ACK", D2C, 2, "Ack(ref_seq=2)"),
    Vector("SET_MODE", C2D, 3, "SetMode(mode=Mode.PULSE)"),
    Vector("SET_INTENSITY", C2D, 4, "SetIntensity(level=3)"),
    Vector(
        "SET_CYCLE",
        C2D,
        5,
        "SetCycle(order=CycleOrder.SEQUENTIAL, inflate_ds=30, hold_ds=50, release_ds=60, "
        "rest_ds=40, targets_dmmhg=(450, 380, 450, 380))",
    ),
    Vector("NAK", D2C, 3, "Nak(ref_seq=5, error=ErrorCode.OVER_PRESSURE_LIMIT)"),
    Vector("PAUSE", C2D, 6, "Pause()"),
    Vector("RESUME", C2D, 7, "Resume()"),
    Vector("KEEPALIVE", C2D, 8, "KeepAlive()"),
    Vector("GET_STATUS", C2D, 9, "GetStatus()"),
    Vector(
        "STATUS",
        D2C,
        4,
        "Status(uptime_ms=123456, state=SessionState.RUNNING, mode=Mode.WAVE, intensity=2, "
        "flags=StatusFlag.PUMP_ON | StatusFlag.LINK_SESSION | StatusFlag.CONTROLLER_PRESENT, "
        "seconds_left=845, session_elapsed_s=55, battery_pct=87, faults=Fault.NONE, "
        "last_end=EndReason.NONE, inlet_mask=0b0101, exhaust_mask=0b1010, "
        "pressures_dmmhg=(812, 0, 805, 3))",
    ),
    Vector("EVENT: button", D2C, 5, "ButtonPressed(button=Button.PLUS)"),
    Vector("STOP", C2D, 10, "Stop()"),
    Vector(
        "EVENT: session ended", D2C, 6, "SessionEnded(reason=EndReason.STOPPED, pressure_s=600)"
    ),
    Vector("VENT", C2D, 11, "Vent()"),
    Vector("EVENT: fault", D2C, 7, "FaultRaised(faults=Fault.OVERPRESSURE)"),
    Vector("RESET_FAULT", C2D, 12, "ResetFault()"),
    Vector(
        "EVENT: session started",
        D2C,
        8,
        "SessionStarted(source=StartSource.REMOTE, mode=Mode.WAVE, intensity=1, lease_s=900)",
    ),
    Vector("RENEW", C2D, 13, "Renew(mode=Mode.PULSE, intensity=3, lease_s=725)"),
    Vector(
        "START, authenticated", C2D, 14, "Start(mode=Mode.PULSE, intensity=1, lease_s=60)", 7, NONCE
    ),
    Vector("PAIR", C2D, 2, "Pair(public_key=bytes(range(0x20, 0x40)), controller_name='phone')"),
    Vector("PAIRED", D2C, 2, "Paired(ref_seq=2, key_id=1, public_key=bytes(range(0x40, 0x60)))"),
    Vector("HELLO, authenticated", C2D, 1, "Hello(client_name='phone', key_id=1)", 8),
    Vector("UNPAIR, authenticated", C2D, 15, "Unpair()", 9, NONCE),
    Vector("EVENT: challenge", D2C, 9, "Challenge(challenge=0x5eed1e55, uptime_ms=123456)"),
    Vector("KEEPALIVE answering it, authenticated", C2D, 15, "KeepAlive(challenge=0x5eed1e55)",
           10, NONCE),
    Vector("ACK, signed by the device", D2C, 10, "Ack(ref_seq=14)", 3, DEVICE_CONTEXT),
    Vector("NAK: preempted by a stop", D2C, 11, "Nak(ref_seq=16, error=ErrorCode.PREEMPTED)"),
    Vector(
        "CAPABILITIES answering V25, signed by the device", D2C, 1,
        'Capabilities(ref_seq=1, model="AirLeg", firmware="1.0", serial="A1", '
        "features=Feature.CYCLE | Feature.PAIRING | Feature.SIGNED_LINK, "
        "ceiling_dmmhg=1300, max_target_dmmhg=1200, session_cap_s=5400, max_lease_s=5400, "
        "watchdog_ms=1000, status_interval_ms=500, pause_limit_s=600, "
        "chambers=(ChamberInfo(Leg.LEFT, Position.FOOT), ChamberInfo(Leg.RIGHT, Position.FOOT)), "
        'modes=(ModeInfo(Mode.WAVE, "wave"), ModeInfo(Mode.PULSE, "pulse"), '
        'ModeInfo(Mode.CYCLE, "cycle")), levels=(LevelInfo(1, 500), LevelInfo(2, 800)), '
        'link_nonce=bytes.fromhex("a0a1a2a3a4a5a6a7"))',
        1, DEVICE_CONTEXT,
    ),
]  # fmt: skip

CONTROLLER_PRIVATE = bytes(range(0xC0, 0xE0))
"""The example X25519 private keys of the key derivation vector (RFC 7748 clamps them)."""
DEVICE_PRIVATE = bytes(range(0xE0, 0x100))
PAIRED_KEY_ID = 1
COBS_BLOCK = bytes(range(1, 0xFF))
"""254 bytes and no zero: the longest run one COBS code byte covers."""
LONG_NAME = bytes([33]) + b"x" * 33
"""A HELLO payload whose string is one byte longer than `str` allows (SPEC 1)."""
STORED_COUNTER = 8
"""The device of the HELLO refusals holds `KEY` as key 1, last counter 8 (V25's)."""


@dataclass(frozen=True)
class Exchange:
    """A frame sent to a reference device in a given state, and the device's whole answer.

    The device has sent nothing before (its first frame has seq 1) and has no
    controller present; it holds `KEY` as key 1 with counter `STORED_COUNTER`.
    test_spec_vectors.py sends ``frame`` to the simulator in that state and
    compares what comes back with ``answer``, byte for byte.
    """

    name: str
    frame: fp.Frame
    answer: str

    def answer_frame(self) -> fp.Frame:
        message = eval(self.answer, vars(fp))
        return fp.Frame(1, message.TYPE, message.encode_payload())


def _signed_hello(key_id: int, counter: int) -> fp.Frame:
    hello = fp.Hello("phone", key_id)
    return fp.Frame(1, hello.TYPE, hello.encode_payload()).signed(KEY, counter)


EXCHANGES = [
    Exchange("a string longer than 32 bytes", fp.Frame(1, fp.MessageType.HELLO, LONG_NAME),
             "Nak(ref_seq=1, error=ErrorCode.BAD_PAYLOAD)"),
    Exchange("a signed HELLO naming a key the device does not hold", _signed_hello(2, 9),
             "Nak(ref_seq=1, error=ErrorCode.NOT_AUTHENTICATED)"),
    Exchange("V25 again: a signed HELLO with a counter the key has used",
             _signed_hello(1, STORED_COUNTER), "Nak(ref_seq=1, error=ErrorCode.REPLAYED)"),
]  # fmt: skip


def key_derivation() -> dict[str, bytes]:
    """Every value of the key derivation of SPEC 12.2, from the two example private keys."""
    controller = KeyPair.from_private(CONTROLLER_PRIVATE)
    device = KeyPair.from_private(DEVICE_PRIVATE)
    keys = {"controller": controller.public, "device": device.public, "key_id": PAIRED_KEY_ID}
    return {
        "controller private": CONTROLLER_PRIVATE,
        "controller public": controller.public,
        "device private": DEVICE_PRIVATE,
        "device public": device.public,
        "X25519 secret": controller.secret(device.public),
        "HKDF salt": SALT,
        "HKDF info": b"key" + controller.public + device.public + bytes([PAIRED_KEY_ID]),
        "key": controller.derive(device.public, **keys),  # type: ignore[arg-type]
    }


def spaced(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def wrap_message(text: str, width: int = 88) -> list[str]:
    """``message:`` and its expression, broken after commas; continuation lines indent."""
    lines, line = [], "message: "
    for piece in text.split(", "):
        if len(line) + len(piece) > width and line.strip() != "message:":
            lines.append(line.rstrip())
            line = "         "
        line += piece + ", "
    lines.append(line[:-2])
    return lines


def render() -> str:
    out: list[str] = []
    number = len(VECTORS)
    out += render_messages()

    def block(title: str, lines: list[str]) -> None:
        nonlocal number
        number += 1
        out.extend([f"V{number}: {title}", "", "```text", *lines, "```", ""])

    derivation = key_derivation()
    block(
        f"key derivation (SPEC 12.2), key_id {PAIRED_KEY_ID}",
        [f"{name + ':':20}{spaced(value)}" for name, value in derivation.items()],
    )
    block(
        "COBS: 254 bytes without a zero",
        [
            f"block:   {spaced(COBS_BLOCK)}",
            f"cobs:    {spaced(cobs.encode(COBS_BLOCK))}",
            "also:    the same without its last byte (01), which a receiver reads as this block",
        ],
    )
    for exchange in EXCHANGES:
        answer = exchange.answer_frame()
        block(
            f"{exchange.name} (controller -> device, then the device's answer)",
            [
                f"frame:   {spaced(exchange.frame.to_bytes())}",
                f"wire:    {spaced(exchange.frame.encode())}",
                f"answer:  {exchange.answer}",
                f"reply:   {spaced(answer.encode())}",
            ],
        )
    block(
        f"the reply cache: the last {REPLY_CACHE_SIZE} answers",
        [
            f"taken:   SetIntensity(level=2) with seq 2 to {REPLY_CACHE_SIZE + 2} after the HELLO "
            "of seq 1, each answered Ack, on a link that is not authenticated",
            "resend:  seq 3, same bytes: the Ack of seq 3 again, the very frame first sent",
            "resend:  seq 2, same bytes: Nak(ref_seq=2, error=ErrorCode.STALE_SEQUENCE) from the "
            f"reference, which remembers {REPLY_CACHE_SIZE}; the Ack again from a device that "
            "remembers more",
        ],
    )
    return "\n".join(out)


def render_messages() -> list[str]:
    out = []
    for number, vector in enumerate(VECTORS, 1):
        frame = vector.frame()
        out.append(f"V{number}: {vector.name} ({vector.direction}, seq {vector.seq})")
        out.append("")
        out.append("```text")
        out.extend(wrap_message(vector.message))
        if vector.counter is not None and vector.direction == D2C:
            nonce = f", device context {spaced(vector.nonce)} (the HELLO's counter, the nonce)"
            out.append(f"auth:    counter {vector.counter}, key 00 01 02 ... 1f{nonce}")
        elif vector.counter is not None:
            nonce = f", link nonce {spaced(vector.nonce)}" if vector.nonce else ", no link nonce"
            out.append(f"auth:    counter {vector.counter}, key 00 01 02 ... 1f{nonce}")
        out.append(f"frame:   {spaced(frame.to_bytes())}")
        out.append(f"wire:    {spaced(frame.encode())}")
        out.append("```")
        out.append("")
    return out


SPEC = Path(fp.__file__).with_name("SPEC.md")
BEGIN = "<!-- vectors: generated by `python -m tests.firmware_protocol.spec_vectors` -->"
END = "<!-- end of vectors -->"


def write_spec() -> None:
    """Replace the vectors section of SPEC.md with `render`'s output."""
    text = SPEC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    SPEC.write_text(f"{head}{BEGIN}\n\n{render()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_spec()
    else:
        print(render())
