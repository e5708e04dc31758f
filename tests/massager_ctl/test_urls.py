"""Device URLs: every accepted form, and errors that teach the accepted forms."""

from __future__ import annotations

import pytest

from massager_ctl.errors import DeviceURLError
from massager_ctl.transports import open_transport
from massager_ctl.transports.sim import config_from_options
from massager_ctl.urls import (
    BleAddress,
    SerialAddress,
    SimAddress,
    SocketAddress,
    parse_device_url,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sim://", SimAddress()),
        (
            "sim://bedroom?seed=3&cycle=false",
            SimAddress(name="bedroom", options={"seed": "3", "cycle": "false"}),
        ),
        ("serial:///dev/ttyUSB0", SerialAddress(path="/dev/ttyUSB0")),
        ("serial:///dev/ttyACM1?baudrate=9600", SerialAddress(path="/dev/ttyACM1", baudrate=9600)),
        ("socket://127.0.0.1:7000", SocketAddress(host="127.0.0.1", port=7000)),
        ("socket://localhost:1", SocketAddress(host="localhost", port=1)),
        ("ble://aa:bb:cc:dd:ee:ff", BleAddress(address="AA:BB:CC:DD:EE:FF")),
        ("ble://AirLeg", BleAddress(name_prefix="AirLeg")),
        (
            "ble://12345678-1234-1234-1234-123456789abc",
            BleAddress(address="12345678-1234-1234-1234-123456789ABC"),
        ),
    ],
)
def test_accepted_forms(text: str, expected: object) -> None:
    assert parse_device_url(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ttyUSB0", "is not a device address"),
        ("usb://x", "unknown scheme 'usb'"),
        ("serial://", "needs the port's path"),
        ("serial:///dev/ttyUSB0?baud=9600", "unknown options ['baud']"),
        ("serial:///dev/ttyUSB0?baudrate=fast", "baudrate that is not a positive number"),
        ("socket://127.0.0.1", "needs a host and a port"),
        ("socket://127.0.0.1:notaport", "needs a host and a port"),
        ("socket://127.0.0.1:99999", "has port 99999, out of range: a port is 1 to 65535"),
        ("socket://127.0.0.1:0", "has port 0, out of range: a port is 1 to 65535"),
        ("ble://", "needs an address or a name prefix"),
    ],
)
def test_bad_addresses_say_why_and_list_the_accepted_forms(text: str, why: str) -> None:
    with pytest.raises(DeviceURLError) as caught:
        parse_device_url(text)
    message = str(caught.value)
    assert why in message
    for form in ("sim://", "serial:///dev/ttyUSB0", "socket://HOST:PORT", "ble://AA:BB"):
        assert form in message


def test_addresses_print_as_urls_that_parse_back() -> None:
    for text in ("sim://bedroom?seed=1", "serial:///dev/ttyUSB0?baudrate=9600",
                 "socket://127.0.0.1:7000", "ble://AA:BB:CC:DD:EE:FF"):  # fmt: skip
        address = parse_device_url(text)
        assert parse_device_url(str(address)) == address


def test_sim_options_are_checked_by_name_and_value() -> None:
    assert config_from_options({"seed": "4", "cycle": "false"}).cycle is False
    with pytest.raises(DeviceURLError, match="sim://: the simulator has no option colour; its "
                       "options are battery"):  # fmt: skip
        config_from_options({"colour": "red"})
    with pytest.raises(DeviceURLError, match="session_cap_s must be a whole number, not 'ten'"):
        config_from_options({"session_cap_s": "ten"})


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sim://?seed=abc", "sim://?seed=abc: seed must be a whole number, not 'abc'"),
        ("sim://?cycle=maybe", "sim://?cycle=maybe: cycle must be true or false, not 'maybe'"),
        ("sim://?session_cap_s=10", "sim://?session_cap_s=10: session_cap_s must be at least "
         "60, not 10"),
        ("sim://?ceiling_mmhg=high", "sim://?ceiling_mmhg=high: ceiling_mmhg must be a number, "
         "not 'high'"),
    ],
)  # fmt: skip
def test_a_bad_sim_option_reads_as_a_sentence(url: str, says: str) -> None:
    address = parse_device_url(url)
    assert isinstance(address, SimAddress)
    with pytest.raises(DeviceURLError) as caught:
        config_from_options(address.options, str(address))
    assert str(caught.value) == says


def test_every_kind_of_address_has_its_transport() -> None:
    kinds = {"sim://": "SimTransport", "serial:///dev/ttyUSB0": "SerialTransport",
             "socket://127.0.0.1:7000": "SerialTransport",
             "ble://AA:BB:CC:DD:EE:FF": "BleTransport"}  # fmt: skip
    for url, kind in kinds.items():
        assert type(open_transport(parse_device_url(url))).__name__ == kind


def test_ble_addresses_carry_their_radio_and_refuse_unknown_options() -> None:
    address = parse_device_url("ble://AirLeg?hci=tcp-client:127.0.0.1:7001")
    assert address == BleAddress(name_prefix="AirLeg", hci="tcp-client:127.0.0.1:7001")
    assert parse_device_url(str(address)) == address
    with pytest.raises(DeviceURLError, match=r"has unknown options \['radio'\]"):
        parse_device_url("ble://AirLeg?radio=1")
    with pytest.raises(DeviceURLError, match="not a transport like tcp-client:HOST:PORT"):
        parse_device_url("ble://AirLeg?hci=nowhere")
