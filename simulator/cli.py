"""The ``massager-sim`` command: a simulated massager on its own, printing its state.

``massager-sim run --press power --for 60`` powers it on, presses the remote's
power button and prints what the device does for a minute of device time.
``massager-sim serve --serial`` (or ``--tcp 127.0.0.1:0``) serves it to a
controller in another process and prints the device URL to use as its first
line; ``massager-ctl --device sim://`` runs one inside the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from typing import TYPE_CHECKING

import click

from firmware_protocol import Button, Mode

from .clock import scaled_runner
from .config import DeviceConfig
from .firmware import Snapshot
from .host import DeviceHost
from .serve import PtyEndpoint, TcpEndpoint

if TYPE_CHECKING:
    from .ble import BleService


def _press(text: str) -> tuple[Button, float]:
    name, _, at = text.partition("@")
    try:
        button = Button[name.strip().upper()]
    except KeyError:
        names = ", ".join(b.name.lower() for b in Button)
        raise click.BadParameter(f"{name!r} is not a button; buttons: {names}") from None
    try:
        return button, float(at or 0)
    except ValueError:
        raise click.BadParameter(f"{at!r} is not a number of seconds") from None


def _settings(pairs: tuple[str, ...]) -> DeviceConfig:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        options[key.strip()] = value.strip()
    try:
        return DeviceConfig.from_options(options)
    except ValueError as error:
        raise click.BadParameter(f"the device has {error}", param_hint="--set") from None


settings_option = click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A device setting, e.g. cycle=false or battery_pct=20.",
)


def describe(snapshot: Snapshot, config: DeviceConfig) -> str:
    """One line for a person: state, mode, lease, pressures per leg, pump, battery."""
    per_leg = len(config.positions)
    legs = "  ".join(
        f"{leg.name[0]}: "
        + " ".join(f"{p:5.1f}" for p in snapshot.pressures_mmhg[i * per_leg : (i + 1) * per_leg])
        for i, leg in enumerate(config.legs)
    )
    state = snapshot.state.name.lower()
    mode = Mode(snapshot.mode).name.lower() if snapshot.mode in set(Mode) else str(snapshot.mode)
    session = f"{mode} {snapshot.intensity}  {snapshot.lease_left_s:5.0f} s left" if (
        snapshot.elapsed_s or snapshot.lease_left_s
    ) else ""  # fmt: skip
    pump = "pump on" if snapshot.pump else "pump off"
    faults = f"  FAULT {snapshot.faults!r}" if snapshot.faults else ""
    return (
        f"{snapshot.uptime_s:8.1f} s  {state:<7} {session:<24} {legs} mmHg  {pump}"
        f"  battery {snapshot.battery_pct:.0f}%{faults}"
    )


def as_json(snapshot: Snapshot) -> str:
    """The snapshot as one line of JSON, enums by name."""
    data = dataclasses.asdict(snapshot)
    for key, value in data.items():
        if hasattr(value, "name"):
            data[key] = value.name.lower() if value.name else str(int(value))
    return json.dumps(data)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="massager-ctl")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """A simulated air-compression leg massager."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@cli.command()
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1, max=1000),
    default=1.0,
    show_default=True,
    help="Run this many times faster than real time.",
)
@click.option(
    "--for", "seconds", type=click.FloatRange(min=0), help="Stop after this many device seconds."
)
@click.option(
    "--press",
    "presses",
    multiple=True,
    metavar="BUTTON[@SECONDS]",
    help="Press a remote button (power, mode, plus, minus, pause), at a device time.",
)
@settings_option
@click.option(
    "--every",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Print the state every this many device seconds.",
)
@click.option("--json", "json_lines", is_flag=True, help="Print JSON lines instead of text.")
def run(
    speed: float,
    seconds: float | None,
    presses: tuple[str, ...],
    settings: tuple[str, ...],
    every: float,
    json_lines: bool,
) -> None:
    """Run one simulated massager and print its state until --for ends (or Ctrl-C)."""
    config = _settings(settings)
    schedule = [_press(p) for p in presses]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        host = DeviceHost(config)
        host.start()
        for button, at in schedule:
            loop.call_later(at, host.press, button)
        start = loop.time()
        report = 0
        try:
            # Reports at 0, every, 2*every ... up to --for, on the device's clock.
            while seconds is None or report * every <= seconds + 1e-9:
                await asyncio.sleep(max(0.0, start + report * every - loop.time()))
                host.sync()
                snapshot = host.firmware.snapshot()
                line = as_json(snapshot) if json_lines else describe(snapshot, config)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                report += 1
        finally:
            host.stop()

    try:
        with scaled_runner(speed) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        sys.exit(130)


def _tcp_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (port 0 picks a free one)")
    return host, int(port)


@cli.command()
@click.option("--serial", "on_pty", is_flag=True, help="Serve on a new pseudo-terminal.")
@click.option("--tcp", metavar="HOST:PORT", help="Serve serial over TCP (port 0: a free one).")
@click.option(
    "--ble",
    "on_ble",
    is_flag=True,
    help="Serve as a Bluetooth LE peripheral on a virtual radio that other processes "
    "join over TCP (see --radio).",
)
@click.option(
    "--radio",
    metavar="HOST:PORT",
    default="127.0.0.1:0",
    show_default=True,
    help="With --ble: where the virtual radio listens for controllers (port 0: a free one).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1, max=1000),
    default=1.0,
    show_default=True,
    help="Run this many times faster than real time; the controller must run at the "
    "same speed (massager-ctl start --speed).",
)
@click.option(
    "--baud",
    type=click.IntRange(min=300, max=4_000_000),
    help="Emulate the wire time of a serial line at this baud rate (8N1).",
)
@settings_option
@click.option(
    "--every",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Print the device's state on stderr every this many device seconds (0: never).",
)
def serve(
    on_pty: bool,
    tcp: str | None,
    on_ble: bool,
    radio: str,
    speed: float,
    baud: int | None,
    settings: tuple[str, ...],
    every: float,
) -> None:
    """Serve a simulated massager to a controller in another process.

    The first line on stdout is the device URL to give massager-ctl, e.g.
    serial:///dev/pts/3, socket://127.0.0.1:40123 or
    ble://C8:3A:66:E9:2C:94?hci=tcp-client:127.0.0.1:40124. SIGTERM or Ctrl-C
    switches the device off and closes the endpoint.
    """
    if [on_pty, tcp is not None, on_ble].count(True) != 1:
        raise click.UsageError("give exactly one of --serial, --tcp HOST:PORT or --ble")
    if on_ble and baud is not None:
        raise click.UsageError("--baud is for serial lines; BLE has no baud rate")
    config = _settings(settings)
    listen = _tcp_address(tcp) if tcp is not None else None
    radio_at = _tcp_address(radio) if on_ble else None
    logging.basicConfig(level=logging.INFO, format="massager-sim: %(message)s")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        host = DeviceHost(config)
        host.start()
        pty: PtyEndpoint | None = None
        server: TcpEndpoint | None = None
        ble: BleService | None = None
        try:
            if radio_at is not None:
                from .ble import BleService  # Bumble loads in a moment; only when asked

                ble = BleService(host)
                try:
                    url = await ble.open(*radio_at)
                except OSError as error:
                    raise click.ClickException(f"cannot listen on {radio}: {error}") from None
            elif listen is None:
                pty = PtyEndpoint(host, baudrate=baud)
                url = pty.open()
            else:
                server = TcpEndpoint(host, baudrate=baud)
                try:
                    url = await server.open(*listen)
                except OSError as error:
                    raise click.ClickException(f"cannot listen on {tcp}: {error}") from None
            sys.stdout.write(url + "\n")
            sys.stdout.flush()
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every or None):
                        await done.wait()
                if every:
                    host.sync()
                    sys.stderr.write(describe(host.firmware.snapshot(), config) + "\n")
        finally:
            if pty is not None:
                pty.close()
            if server is not None:
                await server.close()
            if ble is not None:
                await ble.close()
            host.stop()

    with scaled_runner(speed) as runner:
        runner.run(main())


def main() -> None:
    """Entry point of ``massager-sim``."""
    cli(prog_name="massager-sim")
