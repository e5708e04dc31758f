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

Keys never reach a log, a repr or an error message: the key is a `SecretStr`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from firmware_protocol import Signer
from firmware_protocol.auth import MAX_COUNTER

from .config import config_dir
from .errors import ConfigError, MassagerError
from .urls import BleAddress, DeviceAddress, SerialAddress

log = logging.getLogger(__name__)

COUNTER_BLOCK = 256
"""Counters reserved at a time: one write of the file per 256 authenticated frames."""


def keys_file() -> Path:
    """Where the keys of paired massagers are kept."""
    return config_dir() / "keys.json"


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

    def key_bytes(self) -> bytes:
        """The key itself."""
        return bytes.fromhex(self.key.get_secret_value())


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
        """The key for ``device``, if this controller is paired with it."""
        return self._read().keys.get(device)

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

    def signer(self, device: str) -> Signer | None:
        """What signs frames for ``device`` on one connection, or None if not paired."""
        paired = self.get(device)
        if paired is None:
            return None
        return Signer(paired.key_id, paired.key_bytes(), _Counters(self, device))

    def reserve(self, device: str, count: int) -> int:
        """Reserve ``count`` counters for ``device``; return the first.

        Raises:
            MassagerError: the device is no longer paired, or its counters are spent.
        """
        with self._changing() as data:
            paired = data.keys.get(device)
            if paired is None:
                raise MassagerError(f"this controller is no longer paired with {device}")
            first = paired.next_counter
            if first + count > MAX_COUNTER:
                raise MassagerError(f"the counters of the key for {device} are spent; pair again")
            paired.next_counter = first + count
            return first

    # --- the file -----------------------------------------------------------------

    def _read(self) -> _KeyFile:
        if self.path is None:
            return self._memory
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return _KeyFile()
        except OSError as error:
            raise ConfigError(f"{self.path}: cannot read the keys: {error.strerror}") from None
        self._owner_only(self.path)
        try:
            return _KeyFile.model_validate(json.loads(text))
        except (ValueError, ValidationError) as error:
            first = error.errors()[0] if isinstance(error, ValidationError) else None
            where = ".".join(map(str, first["loc"])) if first else "the file"
            raise ConfigError(
                f"{self.path}: {where} is not valid ({first['msg'] if first else error}); "
                "move the file away and pair again"
            ) from None

    @contextlib.contextmanager
    def _changing(self) -> Iterator[_KeyFile]:
        if self.path is None:
            yield self._memory
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._read()
            yield data
            self._write(data)
        finally:
            os.close(fd)  # closing releases the lock

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
            path.chmod(0o600)


class _Counters:
    """Counters for one connection, taken from blocks reserved in the key store."""

    def __init__(self, store: KeyStore, device: str) -> None:
        self.store = store
        self.device = device
        self._next = self._end = 0

    def __call__(self) -> int:
        if self._next >= self._end:
            self._next = self.store.reserve(self.device, COUNTER_BLOCK)
            self._end = self._next + COUNTER_BLOCK
        value = self._next
        self._next += 1
        return value
