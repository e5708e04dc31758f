"""The `Massager`: one connected device, as an async API.

>>> import asyncio
>>> async def demo():
...     async with Massager.connect("sim://?seed=1") as massager:
...         await massager.start("wave", 2, duration_s=60)
...         return massager.status.state, massager.info.model
>>> asyncio.run(demo())
('running', 'AirLeg Sim 8')

Leaving the ``async with`` block stops a session this controller started; leaving
it through an exception (Ctrl-C included) vents it. If the link itself is gone
there is nothing to send, and the device vents on its own within its watchdog.

Authentication. A massager takes start, mode, intensity, cycles, pause, resume
and fault resets only from a controller paired with it (SPEC §12). `connect`
looks up this controller's key for the device in the `KeyStore` and opens the
link signed with it; without a key, or with a key the device no longer knows,
the link is opened unauthenticated (status, stop and vent still work) and
`auth_problem` says why. `pair` pairs while the device's pairing window is open.
The in-process simulator (``sim://``) opens its own window and pairs itself.

A key that cannot be used (a damaged key file, a key that is not one, spent
counters) never keeps the link from opening, since stop, vent and status need
no key (SPEC §7.4, §10.5): the link opens unauthenticated, `key_problem` holds
the `ConfigError` that names the file and what to do, and every command that
needs a signature raises it before anything is sent. If the key fails on an
open link (counters are reserved in the file as they are used), the link goes
on unsigned, a session this controller started is vented at once (a VENT needs
no key; unsigned keepalives would not keep it alive anyway, and the device's
watchdog would vent it within a second), and every `updates` iterator raises
the error, so a program ends saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from firmware_protocol import (
    AUTHENTICATED,
    URGENT,
    Ack,
    Capabilities,
    Connection,
    CycleOrder,
    DeviceEvent,
    ErrorCode,
    FailReason,
    GetStatus,
    Hello,
    LinkStats,
    LocalProtocolError,
    Message,
    Mode,
    Nak,
    Pair,
    Paired,
    Pause,
    PeerSilent,
    Received,
    Renew,
    Replied,
    RequestFailed,
    ResetFault,
    Resume,
    Role,
    SetCycle,
    SetIntensity,
    SetMode,
    Start,
    Status,
    Stop,
    Timing,
    Unpair,
    Vent,
)
from firmware_protocol.messages import MAX_STRING

from . import __version__
from .errors import (
    CommandPreempted,
    CommandRefused,
    CommandTimeout,
    ConfigError,
    ConnectFailed,
    ConnectTimedOut,
    DeviceInUse,
    DeviceRefused,
    LinkError,
    LinkLost,
    MassagerError,
)
from .keystore import COUNTER_BLOCK, Counters, KeyStore, PairedKey, device_name
from .models import (
    DeviceInfo,
    DeviceStatus,
    DeviceUpdate,
    SessionEndedUpdate,
    SessionStartedUpdate,
    update_from_event,
)
from .transports import Transport, TransportClosed, open_transport
from .transports.base import TransportInUse
from .urls import DeviceAddress, parse_device_url

log = logging.getLogger(__name__)

EXPLANATIONS: dict[ErrorCode, str] = {
    ErrorCode.UNKNOWN_MESSAGE: "it does not know that command",
    ErrorCode.BAD_PAYLOAD: "the command's contents were malformed",
    ErrorCode.BAD_STATE: "it cannot do that in its current state",
    ErrorCode.UNSUPPORTED_MODE: "it does not offer that mode",
    ErrorCode.UNSUPPORTED_INTENSITY: "it does not offer that intensity",
    ErrorCode.LEASE_OUT_OF_RANGE: "the duration is outside what it allows",
    ErrorCode.FAULT_LATCHED: "a fault is latched; clear it first",
    ErrorCode.OVER_PRESSURE_LIMIT: "a pressure is above its limit",
    ErrorCode.NO_CYCLE: "no programmable cycle is loaded",
    ErrorCode.NOT_AUTHENTICATED: (
        "this controller is not paired with it; hold its pairing button and run "
        "massager-ctl pair with its URL"
    ),
    ErrorCode.REPLAYED: (
        "the command's counter was not new (a replayed frame, or a key file restored "
        "from an old copy); pair again"
    ),
    ErrorCode.BATTERY_LOW: "its battery is too low; charge it",
    ErrorCode.UNSUPPORTED_VERSION: "it speaks another protocol version",
    ErrorCode.NO_HELLO: "the link has no session (the device forgot this controller)",
    ErrorCode.STALE_SEQUENCE: "the command arrived out of order",
    ErrorCode.FAULT_PERSISTS: "the fault's cause is still present",
    ErrorCode.PAIRING_CLOSED: (
        "its pairing window is not open; hold its pairing button, then pair within a minute"
    ),
    ErrorCode.PAIRING_FULL: "it already has as many controllers paired as it can hold",
    ErrorCode.PREEMPTED: "a stop or vent arrived with it and went first",
}

VENTED_MMHG = 5.0
"""Every chamber below this counts as vented, for the controller's confirmation.

Stricter than what the device promises (below 10 mmHg within 10 s, SPEC 10.11)
and than what it needs to clear a fault (below 20 mmHg, SPEC 8.3).
"""


class Cycle(BaseModel):
    """A programmable cycle: pressures by place from the foot up, and four phase times."""

    model_config = ConfigDict(frozen=True)

    order: Literal["sequential", "simultaneous"] = "sequential"
    pressures_mmhg: tuple[float, ...] = Field(min_length=1)
    inflate_s: float = Field(gt=0)
    hold_s: float = Field(ge=0)
    release_s: float = Field(ge=0)
    rest_s: float = Field(ge=0)


class Updates:
    """An async iterator of device updates, subscribed from the moment it is made.

    Old status reports are dropped if its reader falls far behind; events are
    kept. It raises `LinkLost` when the link goes down. The massager holds it
    weakly: an iterator nobody reads any more simply goes away.
    """

    LIMIT = 256

    def __init__(self, *, statuses_only: bool = False) -> None:
        self.statuses_only = statuses_only
        self._items: deque[DeviceUpdate] = deque()
        self._ready = asyncio.Event()
        self._error: BaseException | None = None

    def _put(self, update: DeviceUpdate) -> None:
        if self.statuses_only and not isinstance(update, DeviceStatus):
            return
        if len(self._items) >= self.LIMIT:
            stale = next((u for u in self._items if isinstance(u, DeviceStatus)), self._items[0])
            self._items.remove(stale)
        self._items.append(update)
        self._ready.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._ready.set()

    def pending(self) -> list[DeviceUpdate]:
        """Take every update already waiting, without waiting for more."""
        items = list(self._items)
        self._items.clear()
        return items

    def __aiter__(self) -> Updates:
        return self

    async def __anext__(self) -> DeviceUpdate:
        while not self._items:
            if self._error is not None:
                raise self._error
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class Massager:
    """A connected massager. Get one from `Massager.connect`."""

    def __init__(
        self,
        transport: Transport,
        *,
        timing: Timing | None = None,
        client_name: str = f"massager-ctl {__version__}",
    ) -> None:
        self.transport = transport
        self.client_name = client_name
        self._loop = asyncio.get_running_loop()
        self._conn_clock = self._loop.time()
        self._conn = Connection(Role.CONTROLLER, timing=timing or Timing())
        self._waiters: dict[int, asyncio.Future[Ack | Nak | Capabilities | Paired]] = {}
        self._subscriptions: weakref.WeakSet[Updates] = weakref.WeakSet()
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._failure: LinkError | None = None
        self._info: DeviceInfo | None = None
        self._status: DeviceStatus | None = None
        self._raw_status: tuple[Status, DeviceInfo] | None = None
        """The latest STATUS not yet translated: most are never read by anyone."""
        self._first_status = asyncio.Event()
        self._owns_session = False
        self._reader: asyncio.Task[None] | None = None
        self._keys = KeyStore(None)
        self._counters: Counters | None = None
        self._device = ""
        self.auth_problem: str | None = None
        """Why the link is not authenticated, when this controller has a key but it failed."""
        self.key_problem: ConfigError | None = None
        """Why this controller's key for the device cannot be used (the key file), if so."""
        self.sent_first = False
        """Whether the STOP or VENT given to `connect` as ``first`` went out."""
        self._signed_frames = COUNTER_BLOCK
        self._no_start = False
        self._address: DeviceAddress | None = None
        self._wake_keys: KeyStore | None = None
        """The keys a quiet link signs with once it is woken (`wake`)."""

    # --- lifetime -----------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        device: str | DeviceAddress,
        *,
        timeout_s: float | None = None,
        timing: Timing | None = None,
        transport: Transport | None = None,
        keys: KeyStore | None = None,
        first: Stop | Vent | None = None,
        on_first: Callable[[], None] | None = None,
        quiet: bool = False,
        signed_frames: int | None = None,
    ) -> AsyncIterator[Massager]:
        """Open the link to ``device``, say HELLO, and yield the connected `Massager`.

        ``keys`` holds this controller's keys (the user's key file unless given;
        for ``sim://``, keys in memory, since that device lives in this process).
        ``first``, a STOP or VENT, goes out as soon as the link is open, before the
        HELLO (a massager takes them from anyone, before HELLO too: SPEC 7.4), so
        that it reaches the massager even when the handshake then fails; whether it
        did, `sent_first` says, and ``on_first`` is called as soon as it did (for a
        caller that is cancelled before this yields, and must still say so).

        ``signed_frames`` is how many frames the link expects to sign (a program
        says its length): the counters are reserved in the key file for all of
        them at once, so that the file is written once, not every 256 frames.

        ``quiet`` opens an unsigned link, learns what the device is and how it is,
        and lets the link lapse at once (SPEC §7.6): a watch that keeps no battery
        device awake and reserves no counter in the key file. On it the device says
        what changes, and `stop`, `vent` and `refresh` work (the device takes them
        from anyone); nothing that needs a present or paired controller does.

        Raises:
            DeviceURLError: ``device`` is not a device address.
            ConnectFailed: the link cannot be opened or the device does not answer.
        """
        address = parse_device_url(device) if isinstance(device, str) else device
        link = transport or open_transport(address)
        if timeout_s is None:
            timeout_s = link.connect_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await link.open()
        except TimeoutError:
            await link.close()
            raise ConnectTimedOut(
                f"{link.description} did not open within {timeout_s:g} s ({address})"
            ) from None
        massager = cls(link, timing=timing)
        massager._device = device_name(address)
        if signed_frames is not None:
            massager._signed_frames = signed_frames
        own = keys if keys is not None else link.device_keys()
        massager._keys = own if own is not None else KeyStore.default()
        massager._address = address
        if quiet:
            # Unsigned: nothing is reserved in the key file until `wake` needs the key.
            massager._wake_keys, massager._keys = massager._keys, KeyStore(None)
        massager._reader = asyncio.create_task(massager._read_loop(), name="massager-reader")
        if first is not None:
            massager._send_first(first)
            if massager.sent_first and on_first is not None:
                on_first()
        try:
            try:
                await massager._handshake(
                    max(0.0, deadline - loop.time()), timeout_s, address, pair=not quiet
                )
            except LinkError as error:
                error.sent_first = massager.sent_first
                raise
            if quiet:
                massager._conn.go_quiet()
                massager._pump()  # the keepalive and silence timers are let go
            try:
                yield massager
            except BaseException as error:
                if isinstance(error, LinkError):
                    # Also after the handshake: the first went out, whatever failed since.
                    error.sent_first = error.sent_first or massager.sent_first
                await massager._leave(emergency=True)
                raise
            await massager._leave(emergency=False)
        finally:
            # A plain task, not a TaskGroup: a TaskGroup would wrap every error of
            # the caller's block in an ExceptionGroup. The reader never raises.
            massager._shutdown()
            with contextlib.suppress(asyncio.CancelledError):
                await massager._reader
            await link.close()

    def _send_first(self, message: Stop | Vent) -> None:
        """Put ``message`` on the wire now, unanswered: the handshake has not begun.

        Its ACK, if one comes, finds no waiter; the caller sends it again over the
        handshake to have it confirmed.
        """
        try:
            # A 0x00 first, as before a HELLO: it ends whatever noise the device's
            # buffer holds, so the frame is not glued to it and lost (SPEC 3.2).
            self.transport.write(b"\x00")
            self._conn.send(message, self._conn_time())
        except (TransportClosed, LocalProtocolError):
            return  # nothing went out; the handshake says why the link failed
        self._pump()
        self.sent_first = self._failure is None

    async def _handshake(
        self, left_s: float, timeout_s: float, address: DeviceAddress, *, pair: bool = True
    ) -> None:
        try:
            async with asyncio.timeout(left_s):
                await self._hello()
                await self._first_status.wait()
                if pair and not self.authenticated and self.transport.open_pairing():
                    # The built-in simulator's remote is within reach: its pairing
                    # button is held, so the quick start works as written.
                    with contextlib.suppress(CommandRefused):
                        # Not the device named (a test rewired the link): stay a stranger.
                        await self.pair(accept_unsigned=True)
        except (TimeoutError, CommandTimeout):
            raise ConnectTimedOut(
                f"no answer from a massager at {address} within {timeout_s:g} s"
            ) from None
        except DeviceInUse as error:
            raise DeviceInUse(str(error)) from None
        except LinkError as error:
            raise ConnectFailed(f"the link to {address} failed: {error}") from None
        if isinstance(self._failure, DeviceInUse):
            raise DeviceInUse(str(self._failure))
        if self._failure is not None:
            raise ConnectFailed(f"the link to {address} failed: {self._failure}")
        if self.authenticated and not self._conn.device_signs:
            log.warning(
                "this massager does not sign what it sends (paired knowing so): what it "
                "reports could be forged by anyone on its line"
            )

    async def _hello(self) -> None:
        """Say HELLO, signed if this controller has a key; unsigned if the device refuses it."""
        self._use_key()
        hello = Hello(_wire_text(self.client_name))
        if self._conn.signer is None:
            await self._request(hello)
            return
        try:
            await self._request(hello)
        except CommandTimeout:
            if self._conn.stats.unsigned_dropped:
                raise ConnectFailed(
                    "the massager answered, but not signed with this controller's key, so "
                    "nothing it says can be believed: someone else is on the line, or its "
                    "firmware was replaced by an older one; pair again to find out"
                ) from None
            raise
        except CommandRefused as error:
            if error.code not in (ErrorCode.NOT_AUTHENTICATED, ErrorCode.REPLAYED):
                raise
            why = (
                "it does not know it"
                if error.code == ErrorCode.NOT_AUTHENTICATED
                else "an old counter"
            )
            # A refusal of a HELLO cannot be signed: it may be the massager's, or forged.
            self.auth_problem = (
                f"the massager did not accept this controller's key ({why}), or someone on "
                "the line said so (a refusal cannot be signed); it may have been unpaired "
                "or reset: pair again"
            )
            log.warning("%s", self.auth_problem)
            self._counters = None
            self._conn.use_key(None)
            await self._request(hello)

    def _use_key(self) -> None:
        """Sign with this controller's key for the device; with none if it cannot be used."""
        self._counters = None
        self._conn.use_key(None)
        try:
            signer = self._keys.signer(self._device, frames=self._signed_frames)
        except ConfigError as error:
            # Stop, vent and status need no key: open as a stranger, and refuse what
            # needs the key with this error (`_exchange`), not the device's NAK.
            self.key_problem = error
            self.auth_problem = str(error)
            return
        self.key_problem = None
        if signer is not None and isinstance(signer.next_counter, Counters):
            self._counters = signer.next_counter
        paired = self._keys.get(self._device) if signer is not None else None
        # A massager paired as one that signs must sign: its word is not taken unsigned.
        self._conn.use_key(signer, device_signs=paired is None or paired.device_signs)

    @property
    def paired_key(self) -> PairedKey | None:
        """This controller's key for the massager, if it has one."""
        return self._keys.get(self._device)

    @property
    def authenticated(self) -> bool:
        """Whether the link was opened with a key the device accepted."""
        return self._conn.link_key_id is not None

    async def pair(self, name: str | None = None, *, accept_unsigned: bool = False) -> PairedKey:
        """Pair with the massager (its pairing window must be open) and keep the key.

        The link is opened again, authenticated, with the new key.

        A massager that does not sign what it sends (an older firmware, SPEC §12.3)
        is refused before anything is sent, unless ``accept_unsigned``: then anyone
        who can put bytes on its line can make it look as they like, and the key
        file says so, so that every later link warns.

        A key that cannot be used (see `key_problem`) is replaced, but the device
        keeps its slot, since only that key could have signed the UNPAIR.

        Raises:
            CommandRefused: the window is closed (``PAIRING_CLOSED``), or the device is full.
            ConfigError: the key file cannot take a new key; nothing was sent.
            DeviceRefused: the massager does not sign, and that was not accepted.
        """
        if not self.info.signs and not accept_unsigned:
            raise DeviceRefused(
                "this massager does not sign what it sends (an older firmware): anyone who "
                "can put bytes on its line could show a false state or end a program. Pair "
                "with --accept-unsigned-device only if you accept that"
            )
        # Before the device gives away a slot for a key that could not be kept.
        try:
            self._keys.writable()
        except ConfigError as error:
            raise ConfigError(f"{error}; nothing was paired") from None
        if self.authenticated:
            # Pairing again: the massager forgets the old key first, or it would stay
            # valid there (an old copy of the key file) and hold a slot for ever.
            await self.unpair()
        # Here, not at the top: X25519 (cryptography) is needed only to pair.
        from firmware_protocol.pairing import KeyPair

        ours = KeyPair.generate()
        reply = await self._request(Pair(ours.public, _wire_text(name or self.client_name)))
        assert isinstance(reply, Paired)
        key = ours.controller_key(reply)
        paired = PairedKey(
            device=self._device,
            key_id=reply.key_id,
            key=key.hex(),  # pydantic wraps it in a SecretStr
            model=self.info.model,
            serial=self.info.serial,
            paired_at=datetime.now(UTC),
            device_signs=self.info.signs,
        )
        self._keys.put(paired)
        self.auth_problem = None
        await self._hello()
        if not self.authenticated:
            # The new key's HELLO was refused, or someone on the line said it was: a
            # refusal cannot be signed. Never "paired" over a link that is not.
            raise LinkLost(
                f"the massager gave key {paired.key_id}, but the link could not be opened "
                f"with it ({self.auth_problem}); someone may be on the line between: pair "
                "again close to the massager, on a link you trust"
            )
        return paired

    async def unpair(self) -> None:
        """Have the massager forget this controller's key, and forget it here too.

        Raises:
            CommandRefused: the link is not authenticated (``NOT_AUTHENTICATED``).
        """
        try:
            await self._request(Unpair())
        except CommandRefused as error:
            # A re-sent UNPAIR whose first copy worked finds the key already gone.
            if error.code != ErrorCode.NOT_AUTHENTICATED or not self.authenticated:
                raise
        self._keys.remove(self._device)
        self._counters = None
        self._conn.key_gone()

    async def _leave(self, *, emergency: bool) -> None:
        """Leave the device safe: vent after an error, stop after a normal end."""
        if self._failure is not None or not self._owns_session:
            return
        try:
            async with asyncio.timeout(3.0):
                if emergency:
                    await self.vent()
                else:
                    await self.stop()
        except (MassagerError, TimeoutError) as error:
            log.warning("could not end the session cleanly (%s); the device's watchdog will", error)

    def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        if self._reader is not None:
            self._reader.cancel()
        self._fail(LinkLost("the connection was closed"), quiet=True)

    # --- what we know -------------------------------------------------------------

    @property
    def info(self) -> DeviceInfo:
        """What the device announced at connect."""
        assert self._info is not None, "connect first"
        return self._info

    @property
    def status(self) -> DeviceStatus:
        """The latest status report."""
        status = self._latest_status()
        assert status is not None, "connect first"
        return status

    def _latest_status(self) -> DeviceStatus | None:
        raw = self._raw_status
        if raw is not None:
            self._status = DeviceStatus.from_message(*raw)
            self._raw_status = None
        return self._status

    @property
    def link_stats(self) -> LinkStats:
        """A snapshot of the link's frame counters."""
        stats = self._conn.stats
        return LinkStats(**vars(stats))

    @property
    def connected(self) -> bool:
        """Whether the link is up."""
        return self._failure is None

    async def wake(self, *, timeout_s: float = 5.0) -> None:
        """Say HELLO again on this quiet link, signed: now it may start and change pressure.

        The link is as `connect` opens it (authenticated if this controller has a
        key the massager knows); `go_quiet` lets it lapse again. A STOP or VENT
        sent meanwhile overtakes the HELLO, and this raises `CommandPreempted`.

        Raises:
            ConnectFailed: the massager did not answer the HELLO.
        """
        if self._wake_keys is not None:
            self._keys, self._wake_keys = self._wake_keys, None
        assert self._address is not None, "connect first"
        await self._handshake(timeout_s, timeout_s, self._address)

    def forbid_start(self) -> None:
        """No START or RENEW goes out on this link from now on: someone asked to stop.

        Called before a stop asked for from outside the program that uses the link
        (another terminal, the bus), so that the program cannot start pressure again
        after it, even with a START it was about to send.
        """
        self._no_start = True

    def go_quiet(self) -> None:
        """Let the link lapse (SPEC §7.6) when no session of ours runs; `wake` opens it again.

        Raises:
            MassagerError: a session this controller started is on.
        """
        if self._owns_session:
            raise MassagerError("a session of this controller is on: the link must stay")
        with contextlib.suppress(LocalProtocolError):  # the link is already down
            self._conn.go_quiet()
        self._pump()

    @property
    def quiet(self) -> bool:
        """Whether the link was let lapse (``connect(quiet=True)``): only stop, vent, refresh."""
        return self._conn.quiet

    def recent_frames(self) -> str:
        """The last frames in both directions, for a failure report."""
        return self._conn.recent_frames()

    # --- commands -----------------------------------------------------------------

    async def start(self, mode: str, intensity: int | None = None, *, duration_s: float) -> None:
        """Start (or re-start) a session in ``mode`` for ``duration_s`` seconds (the lease).

        For the ``cycle`` mode leave ``intensity`` out; load a cycle first.

        Raises:
            DeviceRefused: the device lacks the mode or level, or the duration is too long.
        """
        await self._leased(Start, mode, intensity, duration_s)

    async def renew(self, mode: str, intensity: int | None = None, *, duration_s: float) -> None:
        """Change the session that is on to ``mode`` and a new lease of ``duration_s``.

        Unlike `start` it never begins a session: if the session has just ended
        (someone pressed stop on the remote) the device refuses with ``BAD_STATE``.
        A paused session stays paused.

        Raises:
            DeviceRefused: no session is on, or as for `start`.
        """
        await self._leased(Renew, mode, intensity, duration_s)

    async def _leased(
        self, kind: type[Start | Renew], mode: str, intensity: int | None, duration_s: float
    ) -> None:
        info = self.info
        number = info.modes.get(mode)
        if number is None:
            raise DeviceRefused(info.no_mode(mode))
        lease = round(duration_s)
        if not 1 <= lease <= info.max_lease_s:
            raise DeviceRefused(
                f"a duration of {duration_s:g} s is outside 1..{info.max_lease_s} s"
            )
        if number == Mode.CYCLE:
            level = 0
        else:
            if intensity is None or info.level(intensity) is None:
                raise DeviceRefused(info.no_intensity(intensity))
            level = intensity
        # Ours from the moment it may reach the device: if this call is cancelled or
        # times out after sending, leaving the block must still stop or vent it.
        owned = self._owns_session
        self._owns_session = True
        try:
            await self._request(kind(number, level, lease))
        except (CommandRefused, ConfigError):  # refused: by the device, or unsigned here
            self._owns_session = owned
            raise

    async def set_mode(self, mode: str) -> None:
        """Switch the running session (or the preset) to ``mode``."""
        number = self.info.modes.get(mode)
        if number is None:
            raise DeviceRefused(self.info.no_mode(mode))
        await self._request(SetMode(number))

    async def set_intensity(self, level: int) -> None:
        """Change the intensity level."""
        if self.info.level(level) is None:
            raise DeviceRefused(self.info.no_intensity(level))
        await self._request(SetIntensity(level))

    async def load_cycle(self, cycle: Cycle) -> None:
        """Load a programmable cycle (pressures by place, foot first)."""
        info = self.info
        if not info.supports_cycle:
            raise DeviceRefused("this massager has no programmable cycle")
        if len(cycle.pressures_mmhg) != info.ranks:
            raise DeviceRefused(
                f"the cycle gives {len(cycle.pressures_mmhg)} pressures; "
                f"this massager has {info.ranks} chambers per leg"
            )
        if max(cycle.pressures_mmhg) > info.max_target_mmhg:
            raise DeviceRefused(
                f"{max(cycle.pressures_mmhg):g} mmHg is above this massager's limit "
                f"of {info.max_target_mmhg:g} mmHg"
            )
        targets = tuple(round(cycle.pressures_mmhg[c.rank] * 10) for c in info.chambers)
        await self._request(
            SetCycle(
                CycleOrder.SEQUENTIAL if cycle.order == "sequential" else CycleOrder.SIMULTANEOUS,
                _ds(cycle.inflate_s),
                _ds(cycle.hold_s),
                _ds(cycle.release_s),
                _ds(cycle.rest_s),
                targets,
            )
        )

    async def pause(self) -> None:
        """Pause: chambers release and the session's clock stops."""
        await self._request(Pause())

    async def resume(self) -> None:
        """Resume a paused session."""
        await self._request(Resume())

    async def stop(self) -> None:
        """End the session and release the chambers. Goes ahead of any waiting command."""
        await self._request(Stop())
        self._owns_session = False

    async def vent(self) -> None:
        """Emergency: end the session and dump all pressure. Goes ahead of everything."""
        await self._request(Vent())
        self._owns_session = False

    async def reset_fault(self) -> None:
        """Clear a latched fault once the device has vented."""
        await self._request(ResetFault())

    async def refresh(self) -> DeviceStatus:
        """Ask for a status report now and return it."""
        statuses = self.statuses()
        await self._request(GetStatus())
        return await anext(statuses)

    # --- watching -----------------------------------------------------------------

    def updates(self) -> Updates:
        """Every status report and device event from this call on, in order."""
        return self._subscribe(Updates())

    def statuses(self) -> AsyncIterator[DeviceStatus]:
        """Every status report from this call on."""
        return self._subscribe(Updates(statuses_only=True))  # type: ignore[return-value]

    def _subscribe(self, updates: Updates) -> Updates:
        if self._failure is not None:
            updates._fail(self._failure)
        else:
            self._subscriptions.add(updates)
        return updates

    async def wait_for(
        self, predicate: Callable[[DeviceStatus], bool], *, timeout_s: float
    ) -> DeviceStatus:
        """The first status (the current one included) for which ``predicate`` holds.

        Raises:
            TimeoutError: none did within ``timeout_s`` seconds.
        """
        latest = self._latest_status()
        if latest is not None and predicate(latest):
            return latest
        statuses = self.statuses()
        async with asyncio.timeout(timeout_s):
            while True:
                status = await anext(statuses)
                if predicate(status):
                    return status

    async def wait_vented(self, *, timeout_s: float = 10.0) -> DeviceStatus:
        """Wait until every chamber reads below `VENTED_MMHG` and no session runs."""
        return await self.wait_for(
            lambda s: not s.active and s.peak_mmhg < VENTED_MMHG, timeout_s=timeout_s
        )

    # --- the engine ---------------------------------------------------------------

    async def _request(self, message: Message) -> Ack | Capabilities | Paired:
        if self._failure is not None:
            raise self._failure
        if message.TYPE in URGENT:
            # Stop and vent never wait behind another command.
            return await self._exchange(message)
        async with self._lock:
            return await self._exchange(message)

    async def _exchange(self, message: Message) -> Ack | Capabilities | Paired:
        if self._failure is not None:
            raise self._failure
        if self._no_start and isinstance(message, Start | Renew):
            # Checked as it would go out, not when it was asked: a stop asked for in
            # the meantime wins over it, whatever it waited behind.
            raise CommandPreempted(
                f"{message.TYPE.name.lower()} was overtaken by a stop or vent and did not run"
            )
        lost = self._sign_ahead(vent=message.TYPE not in URGENT)
        if self.key_problem is not None and message.TYPE in AUTHENTICATED:
            name = message.TYPE.name.lower().replace("_", " ")
            raise lost or ConfigError(
                f"{self.key_problem}. Without the key this controller cannot sign {name}, "
                "which a paired massager takes only signed; nothing was sent"
            )
        try:
            seq = self._conn.send(message, self._conn_time())
        except LocalProtocolError as error:
            raise LinkLost(f"cannot send {message.TYPE.name}: {error}") from None
        waiter: asyncio.Future[Ack | Nak | Capabilities | Paired] = self._loop.create_future()
        self._waiters[seq] = waiter
        self._pump()
        try:
            reply = await waiter
        finally:
            self._waiters.pop(seq, None)
        if isinstance(reply, Nak):
            name = message.TYPE.name.lower().replace("_", " ")
            code = reply.error
            if code == ErrorCode.PREEMPTED:
                # Someone's stop or vent reached the massager with it: as when ours does.
                raise CommandPreempted(f"{name} was overtaken by a stop or vent and did not run")
            if isinstance(code, ErrorCode):
                raise CommandRefused(name, code, EXPLANATIONS[code])
            raise CommandRefused(name, code, f"it gave error code {code}")
        return reply

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.transport.read()
                self._conn.receive_data(data, self._conn_time())
                self._pump()
        except TransportInUse as error:
            self._fail(DeviceInUse(str(error)))
        except TransportClosed as error:
            self._fail(LinkLost(str(error)))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not leave waiters hanging forever
            log.exception("the link reader failed")
            self._fail(LinkLost(f"the link reader failed: {error!r}"))

    def _on_timer(self) -> None:
        woken_for = self._timer_at
        self._timer = self._timer_at = None
        if self._failure is None:
            self._sign_ahead(vent=True)  # a keepalive may be due
            # The loop may fire a clock tick before the deadline: do what woke us, now.
            now = self._conn_time()
            if woken_for is not None and woken_for > now:
                now = self._conn_clock = woken_for
            self._conn.handle_timer(now)
            self._pump()

    def _conn_time(self) -> float:
        """The loop's time for the connection, never before a time it was given already.

        A timer wake runs the connection to its deadline, up to a clock tick past
        the loop; bytes read in that tick must not take its clock back.
        """
        now = self._loop.time()
        if now < self._conn_clock:
            return self._conn_clock
        self._conn_clock = now
        return now

    def _sign_ahead(self, *, vent: bool) -> ConfigError | None:
        """Reserve what the next signed frame needs before the connection signs it.

        The connection must never meet a failing key file half-way through a
        frame (in the keepalive timer, say). If no counters can be had, the key
        is given up: see `_key_lost`, whose error is returned.
        """
        if self._counters is None:
            return None
        try:
            self._counters.ready()
        except ConfigError as error:
            return self._key_lost(error, vent=vent)
        return None

    def _key_lost(self, error: ConfigError, *, vent: bool) -> ConfigError:
        """Go on unsigned, vent a session of ours if ``vent``, and tell every subscriber."""
        self._counters = None
        self._conn.key_gone()
        self.key_problem = error
        self.auth_problem = str(error)
        if vent and self._owns_session:
            # Unsigned keepalives keep nothing alive: end our session now, not at the
            # device's watchdog. Not awaited (this may be the timer); the ACK finds
            # no waiter, and leaving the `connect` block vents again, awaited.
            with contextlib.suppress(LocalProtocolError):
                self._conn.send(Vent(), self._conn_time())
            self._pump()
            lost = ConfigError(
                f"{error}. Without the key this controller cannot keep a session going, "
                "so it sent the massager a VENT (which needs no key)"
            )
        else:
            lost = ConfigError(f"{error}. The link is no longer authenticated")
        log.info("%s", lost)  # the front door that reads the updates says it
        for subscription in list(self._subscriptions):
            subscription._fail(lost)
        return lost

    def _pump(self) -> None:
        """Dispatch the connection's events, flush its bytes, and re-arm its timer."""
        for event in self._conn.events():
            if isinstance(event, Replied):
                if isinstance(event.reply, Capabilities):
                    # Now, not when the handshake resumes: the STATUS that follows in
                    # this same read needs the announced modes to be translated.
                    self._info = DeviceInfo.from_capabilities(event.reply)
                waiter = self._waiters.get(event.seq)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event.reply)
            elif isinstance(event, RequestFailed):
                waiter = self._waiters.get(event.seq)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(_failure_of(event))
            elif isinstance(event, Received):
                self._on_received(event.message)
            elif isinstance(event, PeerSilent):
                self._fail(LinkLost(f"the massager went silent for {event.silent_s:.1f} s"))
                return
        data = self._conn.data_to_send()
        if data:
            try:
                self.transport.write(data)
            except TransportClosed as error:
                self._fail(LinkLost(str(error)))
                return
        deadline = self._conn.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_received(self, message: Message) -> None:
        info = self._info
        if info is None:
            return  # a report from before our HELLO was answered; the next one will do
        update: DeviceUpdate
        if isinstance(message, Status):
            self._first_status.set()
            if not self._subscriptions:
                # Translated when read: a STATUS arrives after every command and twice
                # a second, and with nobody listening most are replaced unread.
                self._raw_status = (message, info)
                return
            update = self._status = DeviceStatus.from_message(message, info)
            self._raw_status = None
        elif isinstance(message, DeviceEvent):
            update = update_from_event(message, info)
            if isinstance(update, SessionEndedUpdate) or (
                isinstance(update, SessionStartedUpdate) and update.source != "link"
            ):
                self._owns_session = False
        else:
            return
        for subscription in list(self._subscriptions):
            subscription._put(update)

    def _fail(self, error: LinkError, *, quiet: bool = False) -> None:
        if self._failure is not None:
            return
        self._failure = error
        if not quiet:
            log.info("link to the massager lost: %s", error)
        self._conn.link_down(self._conn_time())
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        for subscription in list(self._subscriptions):
            subscription._fail(error)
        self._first_status.set()


def _wire_text(text: str) -> str:
    """``text`` cut to the protocol's 32 UTF-8 bytes, never inside a character.

    >>> _wire_text("Schlafzimmer-Massagegerät-für-Anna")
    'Schlafzimmer-Massagegerät-für-'
    """
    return text.encode()[:MAX_STRING].decode(errors="ignore")


def _failure_of(event: RequestFailed) -> MassagerError:
    name = event.request.TYPE.name.lower()
    if event.reason == FailReason.PREEMPTED:
        return CommandPreempted(f"{name} was overtaken by a stop or vent and did not run")
    if event.reason == FailReason.TIMEOUT:
        return CommandTimeout(f"the massager did not answer {name}")
    return LinkLost(f"the link went down before {name} was answered")


def _ds(seconds: float) -> int:
    return max(0, min(round(seconds * 10), 0xFFFF))
