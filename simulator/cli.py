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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from firmware_protocol import Button, Fault, Mode
from firmware_protocol.messages import MAX_STRING

from .clock import scaled_runner
from .config import DeviceConfig
from .faults import (
    CATALOGUE,
    LINK_NOISE,
    LINK_NOISE_DESCRIPTION,
    ScheduledFault,
    describe_faults,
    parse_fault,
)
from .firmware import Snapshot
from .host import DeviceHost
from .memory import DeviceMemory
from .noise import NoisyHost
from .serve import PtyEndpoint, TcpEndpoint

if TYPE_CHECKING:
    from .ble import BleService


class FiniteRange(click.FloatRange):
    """A `click.FloatRange` that also refuses NaN, which every comparison lets through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, if it is a number within the range (NaN is not)."""
        number = super().convert(value, param, ctx)
        if number != number:  # NaN, the one float unequal to itself
            self.fail(f"{value} is not a number", param, ctx)
        return number


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


def _faults(
    ctx: click.Context, param: click.Parameter, texts: tuple[str, ...]
) -> list[ScheduledFault]:
    try:
        return [parse_fault(text) for text in texts]
    except ValueError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def _break(config: DeviceConfig, faults: list[ScheduledFault]) -> DeviceConfig:
    """The config with the hardware faults added to the ones it already names."""
    hardware = [str(f) for f in faults if f.name != LINK_NOISE]
    if not hardware:
        return config
    named = ",".join(part for part in (config.faults, *hardware) if part)
    return config.model_copy(update={"faults": named})


fault_option = click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME[@SECONDS]",
    callback=_faults,
    help="Break the device, from the start or that many device seconds after it is "
    f"switched on (repeatable): {', '.join([*CATALOGUE, LINK_NOISE])}. "
    "massager-sim faults says what each does.",
)

settings_option = click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A device setting, e.g. cycle=false or battery_pct=20.",
)


def faults_in_words(faults: Fault) -> str:
    """The latched faults in words, as a person reads them: ``valve, battery empty``.

    A bit this simulator has no name for (one a later protocol adds) is named by
    its number rather than dropped.
    """
    words = []
    for bit in range(int(faults).bit_length()):
        if int(faults) >> bit & 1:
            name = Fault(1 << bit).name
            words.append(name.lower().replace("_", " ") if name else f"fault bit {bit}")
    return ", ".join(words)


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
    faults = f"  FAULT {faults_in_words(snapshot.faults)}" if snapshot.faults else ""
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
    type=FiniteRange(min=0.1, max=1000),
    default=1.0,
    show_default=True,
    help="Run this many times faster than real time.",
)
@click.option(
    "--for", "seconds", type=FiniteRange(min=0), help="Stop after this many device seconds."
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
    type=FiniteRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Print the state every this many device seconds.",
)
@click.option("--json", "json_lines", is_flag=True, help="Print JSON lines instead of text.")
@fault_option
def run(
    speed: float,
    seconds: float | None,
    presses: tuple[str, ...],
    settings: tuple[str, ...],
    every: float,
    json_lines: bool,
    faults: list[ScheduledFault],
) -> None:
    """Run one simulated massager and print its state until --for ends (or Ctrl-C)."""
    if any(f.name == LINK_NOISE for f in faults):
        raise click.BadParameter(f"{LINK_NOISE} needs a link: use serve", param_hint="--fault")
    config = _break(_settings(settings), faults)
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


def _host(config: DeviceConfig, memory: DeviceMemory, faults: list[ScheduledFault]) -> DeviceHost:
    """The device to serve: one whose link damages bytes if ``link-noise`` is among ``faults``."""
    noise = next((f for f in faults if f.name == LINK_NOISE), None)
    if noise is None:
        return DeviceHost(config, memory)
    return NoisyHost(config, memory, start_s=noise.at_s, seed=config.seed)


@cli.command(name="faults")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def list_faults(as_json: bool) -> None:
    """List the faults --fault can break the device with."""
    if as_json:
        table = {kind.name: kind.description for kind in CATALOGUE.values()}
        sys.stdout.write(json.dumps(table | {LINK_NOISE: LINK_NOISE_DESCRIPTION}) + "\n")
        return
    sys.stdout.write(describe_faults() + "\n")


def announce_speed(config: DeviceConfig, speed: float) -> DeviceConfig:
    """The device, saying its speed after its firmware version: ``sim-0.1.0+20x`` at 20x.

    A controller must keep the device's time (``massager-ctl start --speed 20``):
    at another pace the keepalives it sends once a second of its time arrive
    late or in bursts on the device's, and the watchdog vents. It reads the
    speed from CAPABILITIES and refuses a start at another one, naming both.
    At real time nothing is added. A free-text field of CAPABILITIES carries it,
    so the protocol is the same for every device.

    Raises:
        click.BadParameter: the firmware version and the speed do not fit in the field.
    """
    if speed == 1:
        return config
    firmware = f"{config.firmware}+{speed:g}x"
    if len(firmware.encode()) > MAX_STRING:
        raise click.BadParameter(
            f"firmware={config.firmware} is too long to announce --speed {speed:g} "
            f"after it (at most {MAX_STRING} bytes with it)",
            param_hint="--set",
        )
    return config.model_copy(update={"firmware": firmware})


def device_seconds(seconds: float, speed: float) -> str:
    """A span of device time for a person: also in real time when the two differ.

    >>> device_seconds(60, 1), device_seconds(60, 120)
    ('60 s', '60 s of device time (0.5 s of real time at 120x)')
    """
    if speed == 1:
        return f"{seconds:g} s"
    real = float(f"{seconds / speed:.2g}")
    return f"{seconds:g} s of device time ({real:g} s of real time at {speed:g}x)"


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
    type=FiniteRange(min=0.1, max=1000),
    default=1.0,
    show_default=True,
    help="Run this many times faster than real time; the controller must run at the "
    "same speed (massager-ctl start --speed), and refuses another: the device says its "
    "speed after its firmware version (sim-0.1.0+20x).",
)
@click.option(
    "--baud",
    type=click.IntRange(min=300, max=4_000_000),
    help="Emulate the wire time of a serial line at this baud rate (8N1).",
)
@settings_option
@fault_option
@click.option(
    "--every",
    type=FiniteRange(min=0),
    default=0.0,
    help="Print the device's state on stderr every this many device seconds (0: never).",
)
@click.option(
    "--pairing-window",
    "pairing_window",
    type=click.IntRange(min=1, max=3600),
    help="Open the pairing window at start for this many device seconds (as if its pairing "
    "button were held; at --speed 120, 60 s is half a second of real time, and both are "
    "said); SIGUSR1 opens it again later.",
)
@click.option(
    "--memory",
    "memory_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the paired controllers and their counters in this file (created owner-only), "
    "so they survive a restart of the simulator.",
)
@click.option(
    "--insecure-open",
    is_flag=True,
    help="FOR DEVELOPMENT ONLY: take start, mode and intensity from any controller until "
    "the first one pairs. A real massager never does this.",
)
@click.option(
    "--broken",
    metavar="RULE",
    help="Break one rule of the protocol on purpose, to see the conformance suite catch it "
    "(massager-sim broken lists the rules).",
)
def serve(
    on_pty: bool,
    tcp: str | None,
    on_ble: bool,
    radio: str,
    speed: float,
    baud: int | None,
    settings: tuple[str, ...],
    faults: list[ScheduledFault],
    every: float,
    pairing_window: int | None,
    memory_file: Path | None,
    insecure_open: bool,
    broken: str | None,
) -> None:
    """Serve a simulated massager to a controller in another process.

    The first line on stdout is the device URL to give massager-ctl, e.g.
    serial:///dev/pts/3, socket://127.0.0.1:40123 or
    ble://C8:3A:66:E9:2C:94?hci=tcp-client:127.0.0.1:40124. SIGTERM or Ctrl-C
    switches the device off and closes the endpoint; SIGHUP switches it off and on
    again (its paired controllers kept), as its power switch would.
    """
    if [on_pty, tcp is not None, on_ble].count(True) != 1:
        raise click.UsageError("give exactly one of --serial, --tcp HOST:PORT or --ble")
    if on_ble and baud is not None:
        raise click.UsageError("--baud is for serial lines; BLE has no baud rate")
    config = _break(_settings(settings), faults)
    if insecure_open:
        config = config.model_copy(update={"pairing_required": False})
    if pairing_window is not None:
        config = config.model_copy(update={"pairing_window_s": pairing_window})
    if broken:
        try:
            config = DeviceConfig.model_validate(config.model_dump() | {"broken": broken})
        except ValidationError as error:
            problem = error.errors()[0]["msg"].removeprefix("Value error, ")
            raise click.BadParameter(problem, param_hint="--broken") from None
    config = announce_speed(config, speed)
    try:
        memory = DeviceMemory(memory_file)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--memory") from None
    listen = _tcp_address(tcp) if tcp is not None else None
    radio_at = _tcp_address(radio) if on_ble else None
    logging.basicConfig(level=logging.INFO, format="massager-sim: %(message)s")
    if not config.pairing_required:
        logging.warning("serving OPEN for development: any controller may start it until one pairs")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        host = _host(config, memory, faults)
        host.start()

        def open_pairing() -> None:
            host.open_pairing()
            window = device_seconds(config.pairing_window_s, speed)
            logging.info("pairing window open for %s", window)

        def restart() -> None:
            host.restart()
            logging.info("switched off and on again")

        loop.add_signal_handler(signal.SIGUSR1, open_pairing)
        loop.add_signal_handler(signal.SIGHUP, restart)
        if pairing_window is not None:
            open_pairing()
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


@cli.command(name="broken")
def list_broken() -> None:
    """List the rules serve --broken can break, and the conformance check that catches each."""
    from .conformance.broken import describe_rules  # loaded only when asked

    sys.stdout.write(describe_rules() + "\n")


@cli.command()
@click.argument("url")
@click.option(
    "--inflate",
    is_flag=True,
    help="Run the checks that start sessions (always at intensity 1, for a few seconds). "
    "Take the wraps off the legs first.",
)
@click.option("--json", "as_json_report", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--section",
    "sections",
    multiple=True,
    metavar="N",
    help="Run only the checks of this SPEC.md section (7.4) or chapter (7); repeatable.",
)
@click.option(
    "--speed",
    type=FiniteRange(min=0.1, max=1000),
    metavar="X",
    help="How many times faster than real time the device runs (default: what a simulator "
    "served with --speed announces, else 1).",
)
@click.option(
    "--patience",
    "patience_s",
    type=FiniteRange(min=0),
    metavar="SECONDS",
    default=30.0,
    show_default=True,
    help="Longest wait, in device seconds, for one timing rule (pause limit, session cap).",
)
@click.option(
    "--restart-step",
    is_flag=True,
    help="Ask me to switch the device off and on in the middle of the run (replay after a "
    "restart, SPEC 12.1); I press Enter when it is back.",
)
@click.option(
    "--restart-command",
    metavar="CMD",
    help="A shell command that restarts the device (its memory kept), for the same check "
    "(given 60 s).",
)
@click.option(
    "--fault-step",
    is_flag=True,
    help="Ask me to cause a fault the device detects, and to take it away (faults latch, "
    "SPEC 10.8).",
)
def conformance(
    url: str,
    inflate: bool,
    as_json_report: bool,
    sections: tuple[str, ...],
    speed: float | None,
    patience_s: float,
    restart_step: bool,
    restart_command: str | None,
    fault_step: bool,
) -> None:
    """Check the massager at URL against the rules of the protocol (firmware_protocol/SPEC.md).

    URL is any address massager-ctl takes: serial:///dev/ttyUSB0, socket://HOST:PORT,
    ble://ADDRESS, sim://. The report lists each check under its SPEC.md section:
    pass; FAIL, with every frame sent and received (hex and decoded); or not tested,
    and why. Exit status: 0 nothing failed, 1 a check failed, the device did not
    answer or did not confirm it stopped, 2 a usage error, 128+N when signal N
    interrupted the run (130 Ctrl-C, 143 SIGTERM).

    Without --inflate nothing is sent that can fill a chamber, and the checks that
    need a session are not tested. With it, every session is at intensity 1, and
    the run ends, interrupted or not, with STOP and VENT and a look that the device
    is idle and its chambers empty: said plainly if it is not. A device that requires
    pairing is checked in full only if its pairing window is open when the run
    starts (hold its pairing button): the suite pairs, and unpairs at the end.
    sim:// needs neither: the suite opens the simulator's window, restarts it and
    breaks it itself.

    No check waits longer than --patience for a rule the device announces; a device
    that does not answer HELLO is given up after 4.5 s, one that floods the link or
    will not stop ends the run.
    """
    from .conformance.command import run_command  # the suite loads only when it runs

    sys.exit(
        run_command(
            url,
            inflate=inflate,
            as_json_report=as_json_report,
            sections=sections,
            speed=speed,
            patience_s=patience_s,
            restart_step=restart_step,
            restart_command=restart_command,
            fault_step=fault_step,
        )
    )


def main() -> None:
    """Entry point of ``massager-sim``."""
    cli(prog_name="massager-sim")
