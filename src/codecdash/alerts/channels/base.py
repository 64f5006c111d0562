"""What a channel is, and the error it raises."""

from __future__ import annotations

from typing import Protocol

from codecdash.alerts.model import Notification


class DeliveryError(Exception):
    """A delivery failed. The message names no secret (URLs show their host only).

    ``retry`` False: trying again will not help (a 4xx answer, a refused login).
    ``retry_after``: the receiver asked for this many seconds (429, Retry-After).
    """

    def __init__(self, message: str, *, retry: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    def target(self) -> str:
        """Where it sends, without secrets (for `doctor`, the CLI and logs)."""
        ...

    def send(self, notification: Notification) -> None:
        """Deliver, or raise :class:`DeliveryError`. Blocking; bounded by the timeout."""
        ...
