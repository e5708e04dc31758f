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

A second listener speaks TLS only, with a certificate from a test CA made here
(`make_certificates`), and requires a client certificate that CA signed.
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
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


@dataclass(frozen=True)
class Certificates:
    """A test CA, a certificate it signed for the broker, and one for a client (PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _signed(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)  # fmt: skip
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False)  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(folder: Path) -> Certificates:
    """Write a fresh CA and two certificates it signed into ``folder``."""
    files = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "massager-ctl test CA")])
    ca = _signed("massager-ctl test CA", ca_key, ca_name, ca_key, ca=True)
    files["ca"] = ca
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{who}_cert"] = _signed(f"{who}.test", key, ca_name, ca_key)
        files[f"{who}_key"] = key
    paths = {}
    for name, item in files.items():
        path = paths[name] = folder / f"{name}.pem"
        if isinstance(item, x509.Certificate):
            path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
        else:
            pkcs8 = serialization.PrivateFormat.PKCS8
            path.write_bytes(
                item.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
            )
    return Certificates(**paths)


@dataclass
class Broker:
    """A running Mosquitto."""

    process: subprocess.Popen[str]
    port: int
    folder: Path
    tls_port: int
    certificates: Certificates

    def url(self, user: str = "bridge", *, tls: bool = False) -> str:
        """The broker's URL with a user's name and password (``mqtts://`` on the TLS listener)."""
        if tls:
            return f"mqtts://{user}:{USERS[user]}@127.0.0.1:{self.tls_port}"
        return f"mqtt://{user}:{USERS[user]}@127.0.0.1:{self.port}"

    def restart(self) -> None:
        """Stop the broker and start it again on the same ports (losing its retained messages)."""
        _stop(self.process)
        self.process = _start(self.folder, self.port)

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
    certificates = make_certificates(folder)
    port, tls_port = _free_port(), _free_port()
    (folder / "mosquitto.conf").write_text(
        # Started as root it would drop to the user mosquitto, who cannot read these files.
        f"user {getpass.getuser()}\n"
        "allow_anonymous false\n"
        f"password_file {passwords}\n"
        f"acl_file {folder / 'acl'}\n"
        "set_tcp_nodelay true\n"
        "persistence false\n"
        f"log_dest file {folder / 'mosquitto.log'}\n"
        "log_type all\n"
        f"listener {port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {certificates.ca}\n"
        f"certfile {certificates.server_cert}\n"
        f"keyfile {certificates.server_key}\n"
        "require_certificate true\n"
    )
    process = _start(folder, port)
    broker = Broker(process, port, folder, tls_port, certificates)
    try:
        yield broker
    finally:
        _stop(broker.process)


def _start(folder: Path, port: int) -> subprocess.Popen[str]:
    """Start Mosquitto with the configuration in ``folder``; return once it listens on ``port``."""
    process = subprocess.Popen(
        [mosquitto(), "-c", str(folder / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"mosquitto exited: {output}")
        if time.monotonic() > deadline:
            _stop(process)
            raise AssertionError("mosquitto did not listen within 10 s")
        time.sleep(0.02)


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
