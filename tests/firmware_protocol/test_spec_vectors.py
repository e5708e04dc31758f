"""SPEC.md's test vectors, read from the document and checked in both directions."""

from __future__ import annotations

import re

import pytest

import firmware_protocol as fp
from firmware_protocol import Frame, FrameDecoder, decode_message

from .spec_vectors import BEGIN, END, KEY, SPEC, VECTORS, render


def parse_spec() -> list[dict[str, str]]:
    text = SPEC.read_text(encoding="utf-8")
    section = text.split(BEGIN)[1].split(END)[0]
    vectors = []
    for block in re.findall(r"```text\n(.*?)```", section, flags=re.S):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith(" ") and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        vectors.append(fields)
    titles = re.findall(r"^V\d+: .*\(.*, seq (\d+)\)$", section, flags=re.M)
    for fields, seq in zip(vectors, titles, strict=True):
        fields["seq"] = seq
    return vectors


SPEC_VECTORS = parse_spec()


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
