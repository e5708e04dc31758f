"""Key agreement for pairing: X25519, then HKDF-SHA256 (SPEC §12.2).

The one module of the protocol that needs a package outside the standard
library: ``cryptography``, for X25519, which the standard library lacks. Both
ends run it: each makes a fresh key pair for the pairing, the public keys cross
in PAIR and PAIRED, and both derive the same 32-byte key from the shared secret,
bound to both public keys and the key id.

>>> controller, device = KeyPair.generate(), KeyPair.generate()
>>> keys = dict(controller=controller.public, device=device.public, key_id=1)
>>> a = controller.derive(device.public, **keys)
>>> b = device.derive(controller.public, **keys)
>>> a == b and len(a) == 32
True
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .auth import KEY_SIZE
from .errors import RemoteProtocolError
from .messages import Paired

SALT = b"massager pairing v1"


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair made for one pairing and thrown away after it."""

    private: X25519PrivateKey
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's random source."""
        return cls._of(X25519PrivateKey.generate())

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The key pair of a given 32-byte private key (RFC 7748), for test vectors only.

        A pairing never reuses a key pair: use `generate`.
        """
        return cls._of(X25519PrivateKey.from_private_bytes(private))

    @classmethod
    def _of(cls, private: X25519PrivateKey) -> KeyPair:
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private, public)

    def secret(self, peer: bytes) -> bytes:
        """The X25519 shared secret with ``peer``'s public key (the HKDF's input).

        Raises:
            RemoteProtocolError: ``peer`` is not a usable public key (a low-order
                point gives an all-zero secret, which cryptography refuses).
        """
        try:
            return self.private.exchange(X25519PublicKey.from_public_bytes(peer))
        except (ValueError, InvalidKey) as error:
            raise RemoteProtocolError(f"the peer's public key is not usable: {error}") from None

    def derive(self, peer: bytes, *, controller: bytes, device: bytes, key_id: int) -> bytes:
        """The shared key: HKDF-SHA256 of the X25519 secret, bound to both keys and the key id.

        Raises:
            RemoteProtocolError: ``peer`` is not a usable public key (a low-order
                point gives an all-zero secret, which cryptography refuses).
        """
        secret = self.secret(peer)
        info = b"key" + controller + device + bytes([key_id])
        return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=SALT, info=info).derive(secret)

    def controller_key(self, paired: Paired) -> bytes:
        """The controller's side: the shared key, from the device's PAIRED answer to our PAIR."""
        return self.derive(
            paired.public_key,
            controller=self.public,
            device=paired.public_key,
            key_id=paired.key_id,
        )
