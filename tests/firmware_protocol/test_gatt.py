"""The BLE binding's chunking: any cut of the stream into GATT values decodes to the same frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware_protocol import Frame, FrameDecoder
from firmware_protocol import gatt as binding

payloads = st.lists(st.binary(max_size=236), min_size=1, max_size=6)


@given(data=st.binary(max_size=600), mtu=st.integers(min_value=1, max_value=517))
def test_chunks_keep_every_byte_in_order_and_fit_the_mtu(data: bytes, mtu: int) -> None:
    size = binding.value_size(mtu)
    pieces = list(binding.chunks(data, size))
    assert b"".join(pieces) == data
    assert all(0 < len(piece) <= size for piece in pieces)
    assert size >= binding.DEFAULT_ATT_MTU - binding.ATT_HEADER  # never below 20


@given(payloads=payloads, mtu=st.sampled_from([23, 27, 64, 185, 247, 517]))
def test_frames_spread_over_values_decode_as_sent(payloads: list[bytes], mtu: int) -> None:
    sent = [Frame(seq, 0x80, payload) for seq, payload in enumerate(payloads, start=1)]
    stream = b"".join(frame.encode() for frame in sent)
    decoder = FrameDecoder()
    received = []
    for value in binding.chunks(stream, binding.value_size(mtu)):
        received += decoder.feed(value)
    assert [(f.seq, f.payload) for f in received] == [(f.seq, f.payload) for f in sent]


def test_the_longest_frame_fits_two_values_at_the_preferred_mtu() -> None:
    longest = Frame(1, 0x80, bytes(range(236))).encode()
    assert len(longest) <= 2 * binding.value_size(binding.PREFERRED_ATT_MTU)
    assert len(longest) > binding.value_size(binding.DEFAULT_ATT_MTU) * 12
