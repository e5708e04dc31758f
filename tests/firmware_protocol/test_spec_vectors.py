"""SPEC.md's test vectors, read from the document and checked in both directions."""

from __future__ import annotations

import re

import pytest

import firmware_protocol as fp
from firmware_protocol import Frame, FrameDecoder, decode_message

from .spec_vectors import (
    BEGIN,
    COBS_BLOCK,
    END,
    EXCHANGES,
    KEY,
    PAIRED_KEY_ID,
    SPEC,
    STORED_COUNTER,
    VECTORS,
    key_derivation,
    render,
)


def parse_spec() -> list[tuple[str, dict[str, str]]]:
    """Every vector of SPEC.md: its title line and the fields of its block."""
    text = SPEC.read_text(encoding="utf-8")
    section = text.split(BEGIN)[1].split(END)[0]
    vectors = []
    for title, block in re.findall(
        r"^(V\d+: [^\n]*)\n\n```text\n(.*?)```", section, flags=re.M | re.S
    ):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith(" ") and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        vectors.append((title, fields))
    return vectors


def message_vectors() -> list[dict[str, str]]:
    vectors = []
    for title, fields in parse_spec():
        if "message" in fields:
            seq = re.fullmatch(r"V\d+: .*\(.*, seq (\d+)\)", title)
            assert seq is not None, title
            vectors.append({**fields, "seq": seq[1]})
    return vectors


def vector(title_start: str) -> dict[str, str]:
    """The fields of the one vector whose name begins with ``title_start``."""
    [fields] = [f for t, f in parse_spec() if t.split(": ", 1)[1].startswith(title_start)]
    return fields


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


SPEC_VECTORS = message_vectors()


def test_spec_has_every_vector_and_is_up_to_date() -> None:
    assert len(SPEC_VECTORS) == len(VECTORS)
    assert render() in SPEC.read_text(encoding="utf-8"), (
        "SPEC.md is stale: run python -m tests.firmware_protocol.spec_vectors --write"
    )


def auth_of(vector: dict[str, str]) -> tuple[int, bytes]:
    """The counter and link nonce an ``auth:`` line gives."""
    counter = int(vector["auth"].split(",")[0].split()[1])
    text = vector["auth"]
    _, _, nonce = text.partition("device context " if "device context" in text else "link nonce ")
    return counter, bytes.fromhex(nonce.partition(" (")[0])


@pytest.mark.parametrize("vector", SPEC_VECTORS, ids=lambda v: v["message"].split("(")[0])
def test_vector_encodes_to_the_documented_bytes(vector: dict[str, str]) -> None:
    message = eval(vector["message"], vars(fp))
    frame = Frame(int(vector["seq"]), message.TYPE, message.encode_payload())
    if "auth" in vector:
        frame = frame.signed(KEY, *auth_of(vector))
    assert frame.to_bytes() == bytes.fromhex(vector["frame"])
    assert frame.encode() == bytes.fromhex(vector["wire"])


@pytest.mark.parametrize("vector", SPEC_VECTORS, ids=lambda v: v["message"].split("(")[0])
def test_documented_bytes_decode_to_the_vector(vector: dict[str, str]) -> None:
    [frame] = FrameDecoder().feed(bytes.fromhex(vector["wire"]))
    assert frame.seq == int(vector["seq"])
    message = decode_message(frame.msg_type, frame.payload)
    assert message == eval(vector["message"], vars(fp))
    assert (frame.auth is not None) == ("auth" in vector)
    if frame.auth is not None:
        _, nonce = auth_of(vector)
        assert frame.verify(KEY, nonce)
        assert not nonce or not frame.verify(KEY)  # the tag covers the link's nonce


def test_resynchronisation_example() -> None:
    start = next(v for v in SPEC_VECTORS if v["message"].startswith("Start(mode=Mode.WAVE"))
    decoder = FrameDecoder()
    frames = decoder.feed(bytes.fromhex("67 61 72 62 61 67 65 00") + bytes.fromhex(start["wire"]))
    assert len(frames) == 1
    assert decoder.stats.resyncs == 1


def test_key_derivation_vector() -> None:
    from firmware_protocol.pairing import KeyPair

    fields = vector("key derivation")
    documented = {name: hexbytes(value) for name, value in fields.items()}
    assert documented == key_derivation()
    controller = KeyPair.from_private(documented["controller private"])
    device = KeyPair.from_private(documented["device private"])
    assert (controller.public, device.public) == (
        documented["controller public"],
        documented["device public"],
    )
    keys = {"controller": controller.public, "device": device.public, "key_id": PAIRED_KEY_ID}
    # Both ends derive the documented key, each from its own private key and the other's public.
    assert controller.derive(device.public, **keys) == documented["key"]  # type: ignore[arg-type]
    assert device.derive(controller.public, **keys) == documented["key"]  # type: ignore[arg-type]
    paired = fp.Paired(1, PAIRED_KEY_ID, device.public)
    assert controller.controller_key(paired) == documented["key"]


def test_cobs_vector_of_254_bytes_without_a_zero() -> None:
    from firmware_protocol import cobs

    fields = vector("COBS")
    block, encoded = hexbytes(fields["block"]), hexbytes(fields["cobs"])
    assert block == COBS_BLOCK
    assert 0 not in block
    assert len(block) == 254
    assert cobs.encode(block) == encoded
    assert cobs.decode(encoded) == block
    assert cobs.decode(encoded[:-1]) == block  # the other spelling, which receivers read


def reference_device() -> tuple[object, object]:
    """The device the exchange vectors speak of: fresh, holding KEY as key 1 at counter 8."""
    from simulator import DeviceConfig, Firmware

    firmware = Firmware(DeviceConfig(seed=1), now=0.0)
    table = firmware.memory.pairings
    assert table.add("phone", KEY) == PAIRED_KEY_ID
    table.accept(table.get(PAIRED_KEY_ID), STORED_COUNTER)  # type: ignore[arg-type]
    return firmware, table


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: e.name)
def test_exchange_vectors_are_what_the_reference_device_answers(exchange: object) -> None:
    from simulator import Firmware

    fields = vector(exchange.name)  # type: ignore[attr-defined]
    sent = hexbytes(fields["wire"])
    [frame] = FrameDecoder().feed(sent)
    assert frame.to_bytes() == hexbytes(fields["frame"])
    firmware, table = reference_device()
    assert isinstance(firmware, Firmware)
    firmware.receive_data(sent, 0.0)
    assert firmware.data_to_send() == hexbytes(fields["reply"])
    [reply] = FrameDecoder().feed(hexbytes(fields["reply"]))
    assert decode_message(reply.msg_type, reply.payload) == eval(fields["answer"], vars(fp))
    assert not firmware.snapshot().controller_present  # refused: nothing changed
    assert table.get(PAIRED_KEY_ID).counter == STORED_COUNTER  # type: ignore[attr-defined]


def test_the_reply_cache_vector_is_what_the_reference_device_does() -> None:
    from firmware_protocol.connection import REPLY_CACHE_SIZE
    from simulator import DeviceConfig, Firmware

    fields = vector("the reply cache")
    assert f"seq 2 to {REPLY_CACHE_SIZE + 2}" in fields["taken"]
    firmware = Firmware(DeviceConfig(seed=1, pairing_required=False), now=0.0)
    firmware.receive_data(
        Frame(1, fp.MessageType.HELLO, fp.Hello("c").encode_payload()).encode(), 0
    )
    firmware.data_to_send()
    requests, acks = {}, {}
    for seq in range(2, REPLY_CACHE_SIZE + 3):
        requests[seq] = Frame(seq, fp.MessageType.SET_INTENSITY, b"\x02").encode()
        firmware.receive_data(requests[seq], 0.0)
        [ack] = [f for f in FrameDecoder().feed(firmware.data_to_send()) if f.msg_type == 0x80]
        acks[seq] = ack.encode()
    firmware.receive_data(requests[3], 0.0)
    assert firmware.data_to_send() == acks[3]  # the very frame
    firmware.receive_data(requests[2], 0.0)
    [nak] = FrameDecoder().feed(firmware.data_to_send())
    assert decode_message(nak.msg_type, nak.payload) == fp.Nak(2, fp.ErrorCode.STALE_SEQUENCE)
