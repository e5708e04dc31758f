"""The keys this controller shares with the massagers it has paired with.

One file, ``keys.json`` in the config folder, readable by its owner only (it is
created 0600, and made 0600 again if someone loosened it). A key is named by the
device it belongs to: its URL without the options that do not change which
device it is (the baud rate, the Bluetooth radio).

Counters. Every authenticated frame carries a counter the device must never
have seen from this key, also across restarts of this program. Before using
counters the controller reserves a block of them in the file (under a lock,
so two processes never get the same block) and uses them from memory; a crash
only skips the rest of a block. Each connection starts a new block, so a
connection never reuses a counter an earlier one, in any process, may have sent.

A damaged file (not JSON, a directory, a key that is not a key, counters spent,
unreadable) raises `ConfigError` naming the file, what is wrong and what to do,
from every method; `check` says so without reserving anything. Stop and vent
need no key: `Massager.connect` opens an unauthenticated link when the key
cannot be used (see its docstring).

Keys never reach a log, a repr or an error message: the key is a `SecretStr`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from firmware_protocol import Signer
from firmware_protocol.auth import KEY_SIZE, MAX_COUNTER

from .errors import ConfigError
from .folders import why_not_written
from .paths import keys_file
from .urls import BleAddress, DeviceAddress, SerialAddress

log = logging.getLogger(__name__)

COUNTER_BLOCK = 256
"""Counters reserved at a time, unless the connection says it needs more: one write of the
file per block."""
LOCK_WAIT_S = 5.0
"""How long a change to the key file waits for another program to let go of it."""
NOT_A_KEY = f"is not a key (not {KEY_SIZE} bytes in hex)"


def device_name(address: DeviceAddress) -> str:
    """The name a key is filed under: the device's URL without options that keep the device."""
    if isinstance(address, SerialAddress):
        return f"serial://{address.path}"
    if isinstance(address, BleAddress):
        return f"ble://{address.address or address.name_prefix}"
    return str(address)


class PairedKey(BaseModel):
    """One paired massager: the shared key, its id on the device, and the next free counter."""

    model_config = ConfigDict(extra="forbid")

    device: str
    key_id: int = Field(ge=1, le=255)
    key: SecretStr = Field(description="the 32-byte shared key, hex")
    model: str = ""
    serial: str = ""
    paired_at: datetime
    next_counter: int = Field(1, ge=1, description="no counter at or above this was ever used")
    device_signs: bool = Field(
        True,
        description="the massager signs its frames on an authenticated link (SPEC §12.3); "
        "False only for an older one its owner chose to pair anyway, knowing it does not",
    )

    def key_bytes(self) -> bytes:
        """The key itself.

        Raises:
            ValueError: the stored key is not 32 bytes in hex (the file was damaged).
        """
        key = bytes.fromhex(self.key.get_secret_value())
        if len(key) != KEY_SIZE:
            raise ValueError(f"{len(key)} bytes, not {KEY_SIZE}")
        return key


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: dict[str, PairedKey] = Field(default_factory=dict)


class KeyStore:
    """The paired keys, in ``path`` (owner-only), or only in memory when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory = _KeyFile()

    @classmethod
    def default(cls) -> KeyStore:
        """The user's key file."""
        return cls(keys_file())

    def get(self, device: str) -> PairedKey | None:
        """The key for ``device``, if this controller is paired with it.

        Raises:
            ConfigError: the file cannot be read or is not a key file.
        """
        return self._read().keys.get(device)

    def check(self, device: str) -> PairedKey | None:
        """The key for ``device`` if it can sign, None if there is none; reserves nothing.

        Raises:
            ConfigError: the file cannot be read, or the key in it cannot be used
                (not a key, or its counters are spent); the message names the file.
        """
        paired = self.get(device)
        if paired is None:
            return None
        try:
            paired.key_bytes()
        except ValueError:
            raise self._bad_entry(device, NOT_A_KEY) from None
        if paired.next_counter + COUNTER_BLOCK > MAX_COUNTER:
            raise self._bad_entry(device, "has spent its counters")
        return paired

    def writable(self) -> None:
        """Make sure a new key can be kept, before a massager is asked to pair.

        Raises:
            ConfigError: the file (or its folder) cannot be read or written.
        """
        with self._changing():
            pass

    def names(self) -> list[str]:
        """The devices this controller is paired with."""
        return sorted(self._read().keys)

    def put(self, paired: PairedKey) -> None:
        """Keep a new key (replacing an older one for the same device)."""
        with self._changing() as data:
            data.keys[paired.device] = paired

    def remove(self, device: str) -> bool:
        """Forget the key for ``device``; whether there was one."""
        with self._changing() as data:
            return data.keys.pop(device, None) is not None

    def signer(self, device: str, *, frames: int = COUNTER_BLOCK) -> Signer | None:
        """What signs frames for ``device`` on one connection, or None if not paired.

        Its counters come from a `Counters`, whose first block is reserved now:
        ``frames`` of them, what the connection expects to sign (a program's link
        asks for its whole length, so that the file is written once a session).

        Raises:
            ConfigError: as for `check`, or the first block cannot be reserved.
        """
        paired = self.check(device)
        if paired is None:
            return None
        key = paired.key_bytes()
        counters = Counters(self, device, key, block=max(1, frames))
        counters.ready()
        return Signer(paired.key_id, key, counters)

    def reserve(self, device: str, count: int, key: bytes | None = None) -> int:
        """Reserve ``count`` counters for ``device`` (for ``key``, if given); return the first.

        Raises:
            ConfigError: the file cannot be read or written, the device is no longer
                paired, its key in the file is no longer ``key``, or its counters are spent.
        """
        with self._changing() as data:
            paired = data.keys.get(device)
            if paired is None:
                raise self._bad_entry(
                    device, "is gone: this controller is no longer paired with it"
                )
            try:
                ours = key is None or paired.key_bytes() == key
            except ValueError:
                raise self._bad_entry(device, NOT_A_KEY) from None
            if not ours:
                raise self._bad_entry(device, "was replaced (paired again from another program?)")
            first = paired.next_counter
            if first + count > MAX_COUNTER:
                raise self._bad_entry(device, "has spent its counters")
            paired.next_counter = first + count
            return first

    def _bad_entry(self, device: str, problem: str) -> ConfigError:
        return ConfigError(
            f"{self.path or 'the keys in memory'}: the key for {device} {problem}; "
            f"pair again (massager-ctl pair {device})"
        )

    # --- the file -----------------------------------------------------------------

    def _read(self) -> _KeyFile:
        if self.path is None:
            return self._memory
        try:
            if not stat.S_ISREG(self.path.stat().st_mode):
                # A directory fails to read; a FIFO would block the read, and a stop, for ever.
                raise ConfigError(f"{self.path}: is not a file; move it away and pair again")
            text = self.path.read_bytes().decode()
        except FileNotFoundError:
            return _KeyFile()
        except OSError as error:
            raise ConfigError(
                f"{self.path}: cannot read the keys ({error.strerror or error}); "
                "make it readable by you, or move it away and pair again"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"{self.path}: is not text, so not a key file; move it away and pair again"
            ) from None
        self._owner_only(self.path)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:  # nested too deep: RecursionError
            raise ConfigError(
                f"{self.path}: the file is not valid ({error}); move the file away and pair again"
            ) from None
        try:
            return _KeyFile.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the file"
            raise ConfigError(
                f"{self.path}: {where} is not valid ({first['msg']}); "
                "move the file away and pair again"
            ) from None

    @contextlib.contextmanager
    def _changing(self) -> Iterator[_KeyFile]:
        if self.path is None:
            yield self._memory
            return
        import filelock  # only a key file needs it, never the keys of sim://

        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise self._unwritable(error) from None
        # Bounded: a program stopped while it held the lock must not hold back a stop
        # or vent, which then goes out unsigned and says why (see `Massager`).
        lock = filelock.FileLock(lock_path, timeout=LOCK_WAIT_S, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise ConfigError(
                f"{lock_path}: another program has held it for {LOCK_WAIT_S:g} s; end it "
                "(or, if none runs, delete the lock file)"
            ) from None
        except OSError as error:
            raise self._unwritable(error) from None
        try:
            data = self._read()
            yield data
            try:
                self._write(data)
            except OSError as error:
                raise self._unwritable(error) from None
        finally:
            lock.release()

    def _unwritable(self, error: OSError) -> ConfigError:
        # The error names what the call was given (a lock, a temporary file, a folder to
        # make); the message names the key file, and what is in its way.
        assert self.path is not None
        return ConfigError(
            f"{self.path}: cannot write the keys: {why_not_written(self.path, error)}"
        )

    def _write(self, data: _KeyFile) -> None:
        assert self.path is not None
        text = json.dumps(
            {
                "keys": {
                    name: {**paired.model_dump(mode="json"), "key": paired.key.get_secret_value()}
                    for name, paired in data.keys.items()
                }
            },
            indent=2,
        )
        # A fresh file of our own, owner-only from its first byte: a leftover .tmp
        # (or a link planted there) would keep its own mode or point elsewhere.
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text + "\n")
        # No fsync: it would hold the event loop for milliseconds on every reservation.
        # A crash that loses the write fails closed: the massager refuses the
        # repeated counters (REPLAYED) and the person pairs again; nothing starts.
        os.replace(tmp, self.path)

    @staticmethod
    def _owner_only(path: Path) -> None:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s could be read by others (mode %o); made it owner-only", path, mode)
            try:
                path.chmod(0o600)
            except OSError as error:  # someone else's file: its key may be known to others
                raise ConfigError(
                    f"{path}: could be read by others (mode {mode:o}) and cannot be made "
                    f"owner-only ({error.strerror or error}); move it away and pair again"
                ) from None


class Counters:
    """Counters for one connection, taken from blocks reserved in the key store.

    `ready` reserves the next block when this one is used up, so that a caller can
    meet a failing key file where it can handle it, before a frame is being signed.
    """

    def __init__(
        self, store: KeyStore, device: str, key: bytes, *, block: int = COUNTER_BLOCK
    ) -> None:
        self.store = store
        self.device = device
        self.block = block
        """How many counters each reservation takes."""
        self._key = key
        self._next = self._end = 0

    def ready(self) -> None:
        """Have a counter in hand, reserving a new block if this one is used up.

        Raises:
            ConfigError: no block can be reserved (see `KeyStore.reserve`).
        """
        if self._next >= self._end:
            self._next = self.store.reserve(self.device, self.block, self._key)
            self._end = self._next + self.block

    def __call__(self) -> int:
        """The next counter; never one returned before for this key.

        Raises:
            ConfigError: as for `ready`.
        """
        self.ready()
        value = self._next
        self._next += 1
        return value
