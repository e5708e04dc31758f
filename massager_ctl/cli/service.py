"""The commands that run until stopped: ``daemon`` (the schedules) and ``bridge`` (MQTT)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ..errors import InputError
from .app import current_settings, json_option, run_async
from .results import BridgeNews, DaemonNews, show

if TYPE_CHECKING:
    from pathlib import Path

    from ..mqtt.bridge import Bridge
    from ..settings import Settings


@click.command()
@click.option("--bridge", "with_bridge", is_flag=True,
              help="Also run the MQTT bridge, as `bridge` with the [mqtt] settings.")  # fmt: skip
@click.option("--broker", "broker_url", metavar="URL",
              help="The bridge's broker (implies --bridge) [default: in [mqtt]].")  # fmt: skip
@json_option
def daemon(with_bridge: bool, broker_url: str | None, as_json: bool) -> int:
    """Run the bedtime schedules: each program when it is due, once, never late.

    Sleeps until the next start and wakes when the schedules change (the file
    is watched; SIGHUP does the same). A run found more than the grace window
    late (grace_minutes in config.toml, default 10) is journaled as missed.
    SIGTERM or Ctrl-C ends any running program with the massager vented. Meant
    to run as a systemd user service: see contrib/massager-ctl.service.

    With --bridge it also runs the MQTT bridge: a scheduled program on a
    bridged massager borrows the bridge's link, shows on the bus, and stops
    with a stop or vent sent there.
    """
    settings = current_settings()
    host = None
    if with_bridge or broker_url:
        host = make_bridge(settings, broker_url, as_json=as_json)
    return run_async(lambda: _daemon(settings, host, as_json))


async def _daemon(settings: Settings, host: Bridge | None, as_json: bool) -> int:
    from ..journal import Journal
    from ..paths import journal_file, schedules_file, user_profiles_dir
    from ..schedules.daemon import Daemon, DaemonEvent
    from ..schedules.schedule import ScheduleBook
    from ..schedules.wallclock import SystemClock

    def say(event: DaemonEvent) -> None:
        show(DaemonNews(event), as_json=as_json)

    clock = SystemClock()
    runner = Daemon(
        book=ScheduleBook(schedules_file()),
        journal=Journal(journal_file()),
        clock=clock,
        settings=settings,
        profiles_dir=user_profiles_dir(),
        on_event=say,
        house=host.house if host is not None else None,
    )
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, runner.reload)
    watcher = asyncio.create_task(_watch(schedules_file(), runner.reload))

    def watcher_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            why = task.exception() or "no inotify here"
            say(DaemonEvent(event="error", message=f"the schedules file is not watched "
                             f"({why}); after a change run `systemctl --user reload "
                             "massager-ctl` or send SIGHUP"))  # fmt: skip

    watcher.add_done_callback(watcher_ended)
    bridging = asyncio.create_task(host.run()) if host is not None else None

    def bridge_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():  # the schedules go on without it
            say(DaemonEvent(event="error", message=f"the MQTT bridge stopped: "
                             f"{task.exception()}; the schedules still run"))  # fmt: skip

    if bridging is not None:
        bridging.add_done_callback(bridge_ended)
    try:
        await runner.run()
    except asyncio.CancelledError:
        return 0  # SIGTERM or Ctrl-C: a clean stop, the programs ended and vented
    finally:
        watcher.cancel()
        if bridging is not None:
            bridging.cancel()
            await asyncio.gather(bridging, return_exceptions=True)
    return 0


async def _watch(path: Path, changed: Callable[[], None]) -> None:
    """Call ``changed`` whenever ``path`` is written, replaced or removed (Linux inotify).

    Without inotify (not Linux) the daemon re-reads the file whenever it wakes,
    which is at least once a minute there (`wallclock.FALLBACK_STEP_S`).
    """
    try:
        from asyncinotify import Inotify, Mask
    except ImportError:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with Inotify() as inotify:
        inotify.add_watch(
            path.parent, Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE
        )
        async for event in inotify:
            if event.name is not None and event.name.name == path.name:
                changed()


@click.command()
@click.option("--broker", "broker_url", envvar="MASSAGER_CTL_BROKER", metavar="URL",
              help="mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://... [default: broker in "
              "[mqtt] of config.toml; env MASSAGER_CTL_BROKER; password also "
              "MASSAGER_CTL_MQTT_PASSWORD].")  # fmt: skip
@click.option("--device", "devices", multiple=True, metavar="[NAME=]URL",
              help="A massager to bridge (repeatable) [default: [mqtt.devices] in config.toml, "
              "else the configured device].")  # fmt: skip
@click.option("--base", help="The base topic [default: base in [mqtt], else massager].")
@click.option("--discovery-prefix", metavar="PREFIX", help="Home Assistant's discovery prefix; "
              "'' for none [default: discovery_prefix in [mqtt], else homeassistant].")  # fmt: skip
@json_option
def bridge(
    broker_url: str | None,
    devices: tuple[str, ...],
    base: str | None,
    discovery_prefix: str | None,
    as_json: bool,
) -> int:
    """Put massagers on an MQTT broker: state, commands, and Home Assistant discovery.

    Topics: BASE/bridge/state, BASE/NAME (state, retained), BASE/NAME/availability,
    BASE/NAME/set ({"action": "start", "profile": "evening-45"}, {"action": "stop"},
    {"action": "vent"}, mode, intensity, pause, resume), BASE/NAME/get,
    BASE/NAME/response, and BASE/bridge/request/{devices,profiles,schedules}.
    SIGTERM or Ctrl-C ends running programs with the massagers vented.
    """
    settings = current_settings()
    running = make_bridge(settings, broker_url, devices, base, discovery_prefix, as_json=as_json)

    async def serve() -> int:
        try:
            await running.run()
        except asyncio.CancelledError:
            return 0
        return 0

    return run_async(serve)


def make_bridge(
    settings: Settings,
    broker_url: str | None,
    devices: tuple[str, ...] = (),
    base: str | None = None,
    discovery_prefix: str | None = None,
    *,
    as_json: bool,
) -> Bridge:
    """The bridge the options and the ``[mqtt]`` settings describe (options win).

    Raises:
        InputError, ConfigError: a bad option or setting, a TLS file that cannot be used.
    """
    from ..journal import Journal
    from ..mqtt.bridge import Bridge
    from ..mqtt.broker import BASE_TOPIC, DISCOVERY_PREFIX
    from ..mqtt.topics import topic_name
    from ..paths import journal_file, user_profiles_dir
    from ..urls import DEFAULT_DEVICE

    mqtt = settings.mqtt
    broker = mqtt.address(broker_url)
    base = base if base is not None else mqtt.base
    if not BASE_TOPIC.fullmatch(base):
        raise InputError(f"--base {base!r} is not a topic of plain words")
    prefix = discovery_prefix if discovery_prefix is not None else mqtt.discovery_prefix
    if not DISCOVERY_PREFIX.fullmatch(prefix):
        raise InputError(f"--discovery-prefix {prefix!r} is not one plain word")
    if devices:
        given = list(devices)
    elif mqtt.devices:
        given = [f"{name}={url}" for name, url in mqtt.devices.items()]
    else:
        given = [settings.device or DEFAULT_DEVICE]
    named = dict(topic_name(text) for text in given)
    if len(named) != len(given):
        raise InputError("two devices have the same name; give them NAME=URL")

    def log(line: str) -> None:
        show(BridgeNews(line), as_json=as_json)

    return Bridge(broker, named, settings=settings, journal=Journal(journal_file()),
                  profiles_dir=user_profiles_dir(), base=base, discovery_prefix=prefix,
                  log=log)  # fmt: skip
