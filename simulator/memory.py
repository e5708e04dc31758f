"""What a simulated massager remembers across a restart: its paired controllers.

On hardware this is flash. Here it is a `PairingTable` that outlives the
`Firmware` (a `DeviceHost` keeps it when the device is switched off and on), and,
when given a file, a JSON file written with owner-only permissions after every
change, so that a served simulator keeps its pairings and its counters when its
process restarts. Keeping the counters is what makes a replay fail after a
restart: a device that forgot the highest counter it accepted would accept an
old recorded START again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from firmware_protocol import Pairing, PairingTable


class DeviceMemory:
    """The device's persistent memory: the pairing table, and the file it lives in, if any."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        # Whether pairing is required is the device's setting, not memory: the
        # firmware sets it from its config each time it starts.
        self.pairings = PairingTable()
        if path is not None and path.exists():
            self._load(path)
        self.pairings.on_change = self._save

    def _load(self, path: Path) -> None:
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)  # it holds keys: owner-only, whoever loosened it
            data = json.loads(path.read_text())
            self.pairings.ever_paired = bool(data.get("ever_paired", data["pairings"]))
            for item in data["pairings"]:
                pairing = Pairing(
                    int(item["key_id"]),
                    bytes.fromhex(item["key"]),
                    str(item["name"]),
                    int(item["counter"]),
                )
                self.pairings.pairings[pairing.key_id] = pairing
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a device memory file ({error})") from None

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "ever_paired": self.pairings.ever_paired,
            "pairings": [
                {"key_id": p.key_id, "key": p.key.hex(), "name": p.name, "counter": p.counter}
                for p in self.pairings
            ],
        }
        # A fresh file, owner-only from its first byte: it holds every paired
        # controller's key, and a leftover temporary file would keep its own mode.
        fd, tmp = tempfile.mkstemp(prefix=".memory-", dir=self.path.parent)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(data, file)
        os.replace(tmp, self.path)
