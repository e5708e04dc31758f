"""A damaged key file says what is wrong with it, in a `ConfigError` that names it."""

from __future__ import annotations

import pytest

from massager_ctl.errors import ConfigError
from massager_ctl.keystore import KeyStore, PairedKey, keys_file


def test_a_key_file_that_cannot_be_read_or_written_is_named_in_a_config_error() -> None:
    store = KeyStore.default()
    lock = keys_file().with_name("keys.json.lock")
    lock.mkdir(parents=True)  # the lock taken before every change
    key = PairedKey.model_validate(
        {"device": "socket://h:1", "key_id": 1, "key": "00" * 32, "paired_at": "2026-01-01T00:00Z"}
    )
    with pytest.raises(ConfigError, match=r"keys\.json\.lock: cannot write the keys"):
        store.put(key)
    lock.rmdir()
    keys_file().write_text("[" * 100_000)  # JSON nested too deep to parse
    with pytest.raises(ConfigError, match=r"keys\.json: the file is not valid"):
        store.names()
