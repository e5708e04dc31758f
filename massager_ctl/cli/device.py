"""The commands on one massager but a program: stop, vent, status, reset, pair, unpair; devices."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError, InputError, LinkError, MassagerError
from .app import (
    SPEEDS,
    FiniteRange,
    check_speed,
    device_option,
    json_option,
    parse_duration,
    resolve_device,
    run_async,
    warn,
)
from .results import (
    Adjusted,
    DeviceList,
    DeviceReport,
    FaultCleared,
    Held,
    HeldAnswer,
    Paired,
    Stopped,
    Unpaired,
    show,
)

if TYPE_CHECKING:
    from ..holder import Command, Reply
    from ..holder.door import Who
    from ..models import DeviceStatus
    from ..urls import DeviceAddress


async def stop_or_vent(
    address: DeviceAddress,
    action: str,
    warnings: list[str] | None = None,
    went_out: list[bool] | None = None,
) -> DeviceStatus:
    """Send STOP or VENT and wait (bounded) until the chambers are empty (`halt_directly`).

    Neither needs a key (SPEC §7.4), so the key file is not even opened until they
    have gone out: a file that is damaged, or locked by a program that hangs, can
    neither stop nor delay them. Then the file is checked, and what is wrong with
    it is added to ``warnings``. ``went_out`` gets True as soon as the first STOP
    or VENT is on the line (a Ctrl-C after it can no longer call it back).

    Raises:
        DeviceFault: the massager reports a fault and still holds pressure.
        MassagerError: it still holds pressure after the wait, with no fault to say why.
    """
    from ..holder import halt_directly
    from ..keystore import KeyStore, device_name
    from ..urls import SimAddress

    on_first = None if went_out is None else (lambda: went_out.append(True))
    try:
        return await halt_directly(address, action, went_out=on_first)
    finally:
        # sim:// keeps its keys in memory, in this process: nothing local to fail.
        if warnings is not None and not isinstance(address, SimAddress):
            try:
                KeyStore.default().check(device_name(address))
            except ConfigError as error:
                warnings.append(str(error))


def _one_shot(device: str | None, as_json: bool, action: str) -> int:
    """Stop or vent whatever the key file, config file or journal hold; then say what is wrong.

    The exit status says whether the stop or vent reached the massager; a damaged
    file beside it is a warning, after the result.
    """
    warnings: list[str] = []
    address = _device_to_stop(device, as_json, action, warnings)
    from ..errors import DeviceInUse
    from ..holder import Command
    from ..holder.door import mark_halted

    # Word first, for a start still on its way to its door (see `mark_halted`).
    mark_halted(address)
    # A program of this computer holds the massager (a start in another terminal, the
    # daemon, the bridge): its holder sends the stop on the link it holds, at once.
    if _through_holder(address, Command(action=action), as_json, warnings):  # type: ignore[arg-type]
        return 0
    went_out: list[bool] = []
    try:
        status = run_async(lambda: stop_or_vent(address, action, warnings, went_out))
    except KeyboardInterrupt:
        # Ctrl-C while it waited: say whether the stop or vent had already gone out
        # (it cannot be called back), instead of ending with no word at all.
        if went_out:
            said = (
                f"{action}: interrupted; the {action} had gone out as the link opened, but "
                "it was not confirmed, so whether the massager took it is not known"
            )
        else:
            said = f"{action}: interrupted before the link opened; nothing was sent"
        sys.stderr.write(said + "\n")
        warn(warnings)
        raise
    except DeviceInUse as error:
        warn(warnings)
        raise DeviceInUse(
            f"{error}. {_what_was_sent(error, action)} Stop the program that holds it: if "
            "massager-ctl runs a program on it in another terminal, press Ctrl-C there (it "
            "vents the massager); the daemon: `systemctl --user stop massager-ctl`; a bridge: "
            "Ctrl-C or SIGTERM. Or press the power button on the massager's remote, which stops "
            "it at once"
        ) from None
    except LinkError as error:
        warn(warnings)
        # A massager has one link: most often a program of ours holds it (until the
        # one holder of issue 20 takes commands from every terminal).
        raise type(error)(
            f"{error}. {_what_was_sent(error, action)} If massager-ctl runs a program on it in "
            "another terminal, press Ctrl-C there (it vents the massager); or press the power "
            "button on the massager's remote, which stops it at once"
        ) from None
    except BaseException:
        warn(warnings)
        raise
    show(Stopped(action, str(address), status, fresh_simulator(address), warnings), as_json=as_json)
    warn(warnings)
    return 0


def _through_holder(address: DeviceAddress, command: Command, as_json: bool,
                    warnings: list[str]) -> bool:  # fmt: skip
    """Hand ``command`` to the holder of ``address`` on this computer; False if nothing holds it.

    A holder that does not answer is said in ``warnings``, and False is returned:
    the caller then goes to the massager directly (a stop or vent must not wait on
    a program that hangs).

    Raises:
        MassagerError: the holder answered that the command failed, and why.
    """
    from ..holder.door import HeldElsewhere, find_holder, send_command

    async def knock() -> tuple[Reply, Who] | None:
        who = await find_holder(address)
        if who is None:
            return None
        reply = await send_command(address, command)
        return None if reply is None else (reply, who)

    try:
        answered = run_async(knock)
    except HeldElsewhere as error:
        warnings.append(f"{error}; the {command.action} went to the massager directly")
        return False
    except (OSError, ConfigError) as error:  # the runtime folder: never holds a stop back
        warnings.append(f"the local doors cannot be used ({error}); the {command.action} went "
                        "to the massager directly")  # fmt: skip
        return False
    except KeyboardInterrupt:
        sys.stderr.write(
            f"{command.action}: interrupted; it may have reached the program that holds "
            f"{address}, which carries it out\n"
        )
        raise
    if answered is None:
        return False
    reply, who = answered
    if not reply.ok:
        warn(warnings)
        raise MassagerError(f"{command.action}: {reply.error} (said {who.says()})")
    show(HeldAnswer(command.action, str(address), who, reply.message or ""), as_json=as_json)
    warn(warnings)
    return True


def _what_was_sent(error: LinkError, action: str) -> str:
    """Whether a failed stop or vent went out at all, in words (`LinkError.sent_first`)."""
    from ..errors import DeviceInUse

    if not error.sent_first:
        return "Nothing was sent."
    if isinstance(error, DeviceInUse):
        return (
            f"The {action} went out on the line, but what holds the line turned this "
            "controller away, so it most likely did not reach the massager."
        )
    return (
        f"The {action} was sent as soon as the link opened, but no answer came back, so "
        "whether the massager took it is not known."
    )


def fresh_simulator(address: DeviceAddress) -> bool:
    """Whether a one-shot command on ``address`` acts on a new simulator of its own.

    The built-in simulator lives in the process that uses it: a `stop`, `vent`,
    `status` or `reset` on ``sim://`` starts one for itself, and never reaches
    the simulator a `start` runs in another terminal. Their output says so,
    rather than "done" as if that program had been stopped.
    """
    from ..urls import SimAddress

    return isinstance(address, SimAddress)


def _device_to_stop(
    option: str | None, quiet: bool, action: str, warnings: list[str]
) -> DeviceAddress:
    """As `resolve_device`, but a damaged config file that still names a device warns.

    Raises:
        ConfigError: the config file is damaged and names no usable device.
    """
    from ..paths import config_file
    from ..urls import parse_device_url

    try:
        return resolve_device(option, quiet=quiet)
    except (ConfigError, UnicodeDecodeError) as error:  # the loader lets bytes through
        problem = str(error) if isinstance(error, ConfigError) else f"{config_file()}: not text"
    named = _device_in(config_file())
    if named is None:
        raise ConfigError(
            f"{problem}; it names no device to {action}, so nothing was sent: give --device URL"
        )
    warnings.append(f"{problem}; the device it names ({named}) was used")
    return parse_device_url(named)


_DEVICE_LINE = re.compile(r"""^\s*device\s*=\s*(["'])([^"'\n]*)\1\s*(?:#.*)?$""")


def _device_in(path: Path) -> str | None:
    """The ``device`` a config file names, if it can be read at all, whatever else is wrong.

    A stop or vent must not be held back by the rest of the file: bytes that are not
    UTF-8, TOML nested too deep or broken elsewhere, so when the file does not parse
    its top-level ``device = "..."`` line is read on its own. Nothing but a regular
    file is opened (a FIFO would block the read for ever).
    """
    from ..tomlfiles import parse_toml
    from ..urls import parse_device_url

    try:
        if not path.is_file():
            return None
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    candidates: list[object] = []
    try:
        candidates.append(parse_toml(text).get("device"))
    except ValueError:  # TOMLDecodeError
        for line in text.splitlines():
            if line.lstrip().startswith("["):
                break  # past the top level: a device there belongs to a table
            match = _DEVICE_LINE.match(line)
            if match:
                candidates.append(match.group(2))
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                parse_device_url(candidate)
            except ValueError:
                continue
            return candidate
    return None


@click.command()
@device_option
@json_option
def stop(device: str | None, as_json: bool) -> int:
    """End the session and release the chambers."""
    return _one_shot(device, as_json, "stop")


@click.command()
@device_option
@json_option
def vent(device: str | None, as_json: bool) -> int:
    """Emergency: end the session and dump all pressure at once."""
    return _one_shot(device, as_json, "vent")


@click.command()
@device_option
@json_option
def pause(device: str | None, as_json: bool) -> int:
    """Pause the running session (the chambers let go); resume goes on."""
    return _adjust(device, as_json, "pause")


@click.command()
@device_option
@json_option
def resume(device: str | None, as_json: bool) -> int:
    """Resume a paused session."""
    return _adjust(device, as_json, "resume")


@click.command()
@click.argument("mode")
@device_option
@json_option
def mode(mode: str, device: str | None, as_json: bool) -> int:
    """Switch the massager to MODE (wave, pulse, ...): the running session's, or the next."""
    return _adjust(device, as_json, "mode", mode=mode)


@click.command()
@click.argument("level", type=click.IntRange(1, 10))
@device_option
@json_option
def intensity(level: int, device: str | None, as_json: bool) -> int:
    """Set the intensity LEVEL (1 is the gentlest): the running session's, or the next."""
    return _adjust(device, as_json, "intensity", intensity=level)


def _adjust(device: str | None, as_json: bool, action: str, **value: str | int) -> int:
    """Pause, resume, mode or intensity: through the holder if one holds the massager.

    A running program takes a mode or intensity within its profile's limits. With
    nothing holding the massager, it goes out over a signed link opened for it.
    """
    from pydantic import ValidationError

    from ..holder import Command
    from ..tomlfiles import describe_errors

    address = resolve_device(device, quiet=as_json)
    try:
        command = Command.model_validate({"action": action, **value})
    except ValidationError as error:
        raise InputError(describe_errors(error, action)) from None
    warnings: list[str] = []
    if _through_holder(address, command, as_json, warnings):
        return 0

    async def go() -> Adjusted:
        from ..device import Massager

        async with Massager.connect(address) as massager:
            if action == "pause":
                await massager.pause()
            elif action == "resume":
                await massager.resume()
            elif action == "mode":
                await massager.set_mode(str(value["mode"]))
            else:
                await massager.set_intensity(int(value["intensity"]))
            status = await massager.refresh()
        said = {"pause": "pause: done", "resume": "resume: done"}.get(
            action, f"{action} {next(iter(value.values()), '')}"
        )
        return Adjusted(action, str(address), said, status)

    show(run_async(go), as_json=as_json)
    warn(warnings)
    return 0


@click.command()
@device_option
@json_option
def status(device: str | None, as_json: bool) -> int:
    """Show what the massager is and what it is doing.

    A massager a program of this computer holds is shown as its holder sees it
    (nothing is sent to it). With no --device, what this computer holds is
    listed; when it holds nothing, the configured massager is shown.
    """
    from ..holder.door import HeldElsewhere, everything_held, find_holder

    if device is None:
        held = run_async(everything_held)
        if held:
            show(Held(held), as_json=as_json)
            return 0
    address = resolve_device(device, quiet=as_json)
    try:
        who = run_async(lambda: find_holder(address))
    except HeldElsewhere:
        who = None  # not answering: the massager itself may still be
    if who is not None:
        show(Held([who]), as_json=as_json)
        return 0

    async def go() -> int:
        from ..device import Massager

        async with Massager.connect(address) as massager:
            current = await massager.refresh()
            report = DeviceReport(
                str(address),
                massager.info,
                current,
                massager.link_stats,
                massager.authenticated,
                massager.auth_problem,
                fresh_simulator(address),
            )
            show(report, as_json=as_json)
        return 0

    return run_async(go)


@click.command()
@device_option
@json_option
def reset(device: str | None, as_json: bool) -> int:
    """Clear a latched fault once its cause is mended (the massager checks, and may refuse)."""
    address = resolve_device(device, quiet=as_json)
    cleared, status = run_async(lambda: clear_fault(address))
    show(FaultCleared(str(address), cleared, status, fresh_simulator(address)), as_json=as_json)
    return 0


async def clear_fault(address: DeviceAddress) -> tuple[tuple[str, ...], DeviceStatus]:
    """Clear the massager's latched faults: the faults cleared, and its status after.

    With no fault latched nothing is sent, and none are cleared.

    Raises:
        CommandRefused: the massager refuses (the cause of the fault is still there).
        DeviceFault: it took the reset but still reports a fault.
    """
    from ..device import Massager
    from ..errors import DeviceFault
    from ..models import explain_faults

    async with Massager.connect(address) as massager:
        latched = (await massager.refresh()).faults
        if not latched:
            return (), massager.status
        await massager.reset_fault()
        status = await massager.refresh()
    if status.faults:
        raise DeviceFault(
            "the massager took the reset but still reports a fault. "
            + explain_faults(status.faults)
        )
    return latched, status


@click.command()
@click.argument("url", required=False)
@click.option("--name", help="What the massager calls this controller (default: the host name).")
@click.option(
    "--speed",
    type=FiniteRange(min=SPEEDS[0], max=SPEEDS[1]),
    help="Keep time with a simulator served with `massager-sim serve --speed`.",
)
@click.option(
    "--accept-unsigned-device",
    is_flag=True,
    help="Pair with an older massager that does not sign what it sends (see Pairing in the "
    "README): anyone who can reach its line could then show a false state.",
)
@json_option
def pair(
    url: str | None,
    name: str | None,
    speed: float | None,
    accept_unsigned_device: bool,
    as_json: bool,
) -> int:
    """Pair with the massager at URL while its pairing window is open.

    Hold the massager's pairing button first (massager-sim: serve with
    --pairing-window, or send it SIGUSR1). The shared key is kept in keys.json
    in the config folder, readable by you only. The built-in simulator (sim://)
    pairs by itself.
    """
    import socket

    from ..urls import SimAddress

    address = resolve_device(url, quiet=as_json)

    async def go() -> int:
        from ..device import Massager

        async with Massager.connect(address) as massager:
            if isinstance(address, SimAddress):
                paired = massager.paired_key  # it paired itself on connect
            else:
                check_speed(massager.info, speed, doing="pairing")
                paired = await massager.pair(
                    name or f"massager-ctl@{socket.gethostname()}",
                    accept_unsigned=accept_unsigned_device,
                )
            assert paired is not None
            result = Paired(paired.device, paired.key_id, paired.model, paired.serial,
                            massager.authenticated)  # fmt: skip
            show(result, as_json=as_json)
        return 0

    return run_async(go, speed=speed)


@click.command()
@click.argument("url", required=False)
@click.option(
    "--forget-only",
    is_flag=True,
    help="Only delete this controller's key, without telling the massager (it is gone, "
    "or it was reset). The massager keeps its slot until it is reset.",
)
@json_option
def unpair(url: str | None, forget_only: bool, as_json: bool) -> int:
    """Have the massager at URL forget this controller, and delete the key here."""
    from ..keystore import KeyStore, device_name

    address = resolve_device(url, quiet=as_json)
    device = device_name(address)

    async def go() -> int:
        from ..device import Massager

        if forget_only:
            removed = KeyStore.default().remove(device)
        else:
            async with Massager.connect(address) as massager:
                if massager.key_problem is not None:
                    raise ConfigError(
                        f"{massager.key_problem}. Without the key the massager cannot be "
                        "told to forget it, so nothing was unpaired"
                    )
                if not massager.authenticated:
                    raise MassagerError(
                        f"not paired with {device}"
                        + (f" ({massager.auth_problem})" if massager.auth_problem else "")
                        + "; nothing to unpair (--forget-only deletes a key the massager "
                        "no longer knows)"
                    )
                await massager.unpair()
                removed = True
        show(Unpaired(device, removed), as_json=as_json)
        return 0

    return run_async(go)


@click.command()
@click.argument("urls", nargs=-1, metavar="[URL]...")
@click.option("--probe", is_flag=True, help="Say HELLO on each port and show what answers.")
@click.option(
    "--baudrate",
    type=click.IntRange(min=300),
    default=115200,
    show_default=True,
    help="Baud rate for the serial ports listed.",
)
@click.option(
    "--timeout",
    "wait",
    default="2s",
    show_default=True,
    metavar="DURATION",
    help="How long a probe waits, with a unit: 2s, 1m (a Bluetooth one at least 10 s).",
)
@click.option(
    "--scan",
    "scan_for",
    default="3s",
    show_default=True,
    metavar="DURATION",
    help="How long to listen for Bluetooth LE massagers, with a unit: 3s, 1m (0 skips the scan).",
)
@click.option(
    "--hci",
    "hci",
    multiple=True,
    metavar="SPEC",
    help="Also scan this Bumble radio, e.g. tcp-client:127.0.0.1:7001 (repeatable); "
    "the system's Bluetooth is then listed only if it can scan.",
)
@json_option
def devices(
    urls: tuple[str, ...],
    probe: bool,
    baudrate: int,
    wait: str,
    scan_for: str,
    hci: tuple[str, ...],
    as_json: bool,
) -> int:
    """List Bluetooth LE massagers, serial ports, and any device URLs given.

    Bluetooth massagers are found by scanning for the massager service on the
    system's radio and on each radio named by --hci or by a ble://...?hci= URL
    given. With --probe each entry is opened and sent a HELLO (a few bytes: only
    probe ports whose other devices do not mind), and the massagers that answer
    say what they are. The built-in simulator (sim://) is always there.
    """
    from ..discovery import given, probe_all, radios, scan_all, serial_ports, unique

    timeout_s = parse_duration(wait, "--timeout", bare=False)
    scan_s = parse_duration(scan_for, "--scan", bare=False)
    named = given(list(urls))
    found = []
    if scan_s > 0:
        found = run_async(lambda: scan_all(radios(list(urls), list(hci)), timeout_s=scan_s))
    # A massager heard advertising is shown with what the scan saw, even if also given.
    entries = unique(found + named + serial_ports(baudrate))
    if probe:
        entries = run_async(lambda: probe_all(entries, timeout_s=timeout_s))
    show(DeviceList(entries, probe), as_json=as_json)
    return 0
