"""A real Mosquitto broker for the MQTT tests, on a free port, with users and an ACL.

`./dev test` installs Debian's ``mosquitto`` package when it is missing; a
machine without it fails these tests with that instruction rather than
skipping them. The broker listens on 127.0.0.1 only, refuses anonymous
clients, and knows three users:

- ``bridge`` (password ``bridge-pw``): everything under ``massager/`` and
  ``homeassistant/``;
- ``phone`` (``phone-pw``): may read all of ``massager/`` but command only
  ``massager/bedroom``;
- ``admin`` (``admin-pw``): everything, for the tests' own clients.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USERS = {"bridge": "bridge-pw", "phone": "phone-pw", "admin": "admin-pw"}

ACL = """\
user bridge
topic readwrite massager/#
topic readwrite homeassistant/#

user phone
topic read massager/#
topic write massager/bedroom/set
topic write massager/bedroom/get

user admin
topic readwrite #
"""


@dataclass
class Broker:
    """A running Mosquitto."""

    process: subprocess.Popen[str]
    port: int
    folder: Path

    def url(self, user: str = "bridge") -> str:
        """The broker's URL with a user's name and password."""
        return f"mqtt://{user}:{USERS[user]}@127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the broker logged so far."""
        return (self.folder / "mosquitto.log").read_text(errors="replace")


def mosquitto() -> str:
    """The broker's executable.

    Raises:
        AssertionError: it is not installed (run `./dev test`, which installs it).
    """
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto")
                                           .exists() else None)  # fmt: skip
    assert found, "Mosquitto is not installed: `./dev test` installs it (apt-get install mosquitto)"
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def run_broker(folder: Path) -> Iterator[Broker]:
    """Start Mosquitto with the users and ACL above; stop it at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    passwords = folder / "passwords"
    passwords.touch()
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                       capture_output=True)  # fmt: skip
    (folder / "acl").write_text(ACL)
    port = _free_port()
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\n"
        # Started as root it would drop to the user mosquitto, who cannot read these files.
        f"user {getpass.getuser()}\n"
        "allow_anonymous false\n"
        f"password_file {passwords}\n"
        f"acl_file {folder / 'acl'}\n"
        "set_tcp_nodelay true\n"
        "persistence false\n"
        f"log_dest file {folder / 'mosquitto.log'}\n"
        "log_type all\n"
    )
    process = subprocess.Popen(
        [mosquitto(), "-c", str(folder / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"mosquitto exited: {output}")
            assert time.monotonic() < deadline, "mosquitto did not listen within 10 s"
            time.sleep(0.02)
        yield Broker(process, port, folder)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
