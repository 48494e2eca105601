"""Errors of eventkit-queues (importable without the ``pubsub`` extra)."""

from __future__ import annotations

from collections.abc import Sequence

from eventkit_core import QueueError, RawEvent


class PublishError(QueueError):
    """Some events of a ``put_many`` were not published.

    ``published`` were confirmed by the broker (safe to release from the durable log);
    ``failed`` were not and must be put again. Per ordering key, nothing after a failed event
    is in ``published``: retrying ``failed`` in order keeps each identity's order.
    ``errors`` holds one exception per failed event (same order as ``failed``).
    """

    code = "publish_failed"

    def __init__(
        self,
        message: str,
        *,
        published: Sequence[RawEvent],
        failed: Sequence[RawEvent],
        errors: Sequence[BaseException] = (),
    ) -> None:
        super().__init__(message)
        self.published: list[RawEvent] = list(published)
        self.failed: list[RawEvent] = list(failed)
        self.errors: list[BaseException] = list(errors)
