"""The Redis store's cancel and lease side: stopping a producer wherever it runs, and
proving that a producer is still alive.

- **Cancel across instances**: each instance listens on its own pub/sub channel; DELETE
  or a replacement anywhere publishes ``<gen> <id>`` to the owner, which cancels that
  producer's cancel scope.
- **Leases**: the owner renews ``lease:<id>`` (a key with a PX expiry) every third of the
  lease period. A renewal that finds the session replaced, stopped or finalized elsewhere
  cancels the producer: that also covers a cancel message missed during an outage. One
  task per instance renews the leases of all its producers in one script call
  (``RENEW_MANY``): a thousand producers cost one round trip every third of a lease, not a
  thousand tasks and a thousand round trips.
"""

from __future__ import annotations

from contextlib import suppress

import coredis
import trio

from trio_streams.stores.redis.commands import REDIS_ERRORS, RedisCommands, only, text
from trio_streams.stores.redis.keys import control_channel
from trio_streams.stores.redis.producing import Producing

#: The most producers one ``RENEW_MANY`` call renews (Redis runs a script alone: a very
#: busy instance's renewals are split so that no call holds Redis up for long).
RENEW_BATCH = 500


class Control:
    """This instance's control channel, and the lease renewals of its producers."""

    def __init__(
        self,
        commands: RedisCommands,
        client: coredis.Redis[bytes],
        instance_id: str,
        producing: Producing,
    ) -> None:
        self._commands = commands
        self._client = client
        self.instance_id = instance_id
        self._producing = producing
        #: Set once this instance is subscribed to its control channel.
        self.listening = trio.Event()
        self._scope = trio.CancelScope()
        self._closed = False

    def shutdown(self) -> None:
        self._closed = True
        self._scope.cancel()

    async def renew_all(self) -> None:
        """One round of renewals, every third of a lease (a chore of the store's
        :class:`~trio_streams.core.lifetime.Lifetime`): ``RENEW_MANY`` per
        :data:`RENEW_BATCH` producers; those whose session moved on are stopped."""
        running = [
            local
            for local in self._producing.running.values()
            if not local.cancel_scope.cancel_called
        ]
        for first in range(0, len(running), RENEW_BATCH):
            batch = running[first : first + RENEW_BATCH]
            pairs = [
                value for local in batch for value in (local.conversation_id, local.generation)
            ]
            try:
                renewed = await self._commands.run("RENEW_MANY", self._commands.lease_ms, *pairs)
            except REDIS_ERRORS:
                continue  # unreachable: try again in a third of a lease, before it runs out
            for local, ok in zip(batch, renewed, strict=True):
                if not ok:
                    local.cancel_scope.cancel()

    async def cancel_producer(self, owner: str, conversation_id: str, generation: str) -> None:
        """Cancel a producer wherever it runs: here directly, elsewhere by pub/sub."""
        if owner == self.instance_id:
            self.cancel_local(generation)
            return
        # If this fails, the owner's next lease renewal finds the session gone and stops.
        with suppress(*REDIS_ERRORS):
            await self._client.publish(control_channel(owner), f"{generation} {conversation_id}")

    def cancel_local(self, generation: str) -> None:
        local = self._producing.get(generation)
        if local is not None:
            local.cancel_scope.cancel()

    async def listen(self) -> None:
        """Cancel the producers that other instances name on this instance's channel."""
        channel = control_channel(self.instance_id)
        with self._scope:
            while True:
                try:
                    async with self._client.pubsub(
                        channels=[channel], ignore_subscribe_messages=True
                    ) as messages:
                        self.listening.set()
                        async for message in messages:
                            generation, _, _ = text(message["data"]).partition(" ")
                            self.cancel_local(generation)
                except BaseException as exc:
                    # coredis's subscriber tasks may end with ClosedResourceError next to
                    # our Cancelled when shutdown cancels them: that is the end we asked for.
                    if self._closed:
                        return
                    if not only(exc, REDIS_ERRORS):
                        raise
                    await trio.sleep(0.5)
