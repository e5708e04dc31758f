"""The transport interface: a pipe of bytes to one device."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ..errors import LinkError

if TYPE_CHECKING:
    from ..keystore import KeyStore


class TransportClosed(LinkError):
    """The byte pipe is closed: the port vanished, the peer disconnected, or we closed it."""


class TransportInUse(TransportClosed):
    """The other end turned the link away at once: another program holds the device."""


class Transport(ABC):
    """A byte pipe to one device. Writes never block; reads wait for the next chunk.

    Open it with ``async with transport:`` or `open`/`close`. `read` raises
    `TransportClosed` once the link is gone, and so does `write`.
    """

    description: str = "a device"
    connect_timeout_s: float = 5.0
    """How long opening the link and the HELLO may take, unless the caller says."""

    @abstractmethod
    async def open(self) -> None:
        """Open the link; raises `ConnectFailed` with a plain reason if it cannot."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Queue ``data`` for the device without waiting."""

    @abstractmethod
    async def read(self) -> bytes:
        """The next chunk of bytes from the device (never empty)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the link; safe to call more than once."""

    def device_keys(self) -> KeyStore | None:
        """This controller's keys for the device, where the transport keeps them; else None.

        The built-in simulator lives and dies with this process, and so does what it
        paired: its keys are kept in memory, not in the user's key file (None: there).
        """
        return None

    def open_pairing(self) -> bool:
        """Hold the device's pairing button, where the transport can reach its remote.

        Only the built-in simulator's remote is within reach (so that the quick start
        works as written); a real massager's button is pressed by a person. Whether
        the window was opened.
        """
        return False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def plain_error(error: BaseException) -> str:
    """An OS or library error as a few plain words for a message."""
    if isinstance(error, ConnectionRefusedError):
        return "nothing listens there (connection refused)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
