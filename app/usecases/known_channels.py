"""What this process last knew of each batch channel, so a voucher's pre-check needs no database read.

The pre-check only decides whether the handler is worth running; the booking (ledger/channels.py
`book_voucher`) checks the cumulative rule again under the channel's row lock. So a stale entry costs at
most one read: a voucher the entry refuses is checked against the ledger before it is refused, and one the
entry passes wrongly (another replica charged the channel meanwhile) is refused by the booking.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from ledger.channels import Channel

KNOWN_CHANNELS_MAX = 4096  # about 1 KB each: the channels in use right now, not all there are


class KnownChannels:
    """A bounded, least-recently-used map of channel id to its last known state."""

    def __init__(self, size_max: int = KNOWN_CHANNELS_MAX) -> None:
        self._known: OrderedDict[str, Channel] = OrderedDict()
        self._size_max = size_max

    def get(self, channel_id: str) -> Channel | None:
        found = self._known.get(channel_id)
        if found is not None:
            self._known.move_to_end(channel_id)
        return found

    def remember(self, channel: Channel) -> None:
        self._known[channel.channel_id] = channel
        self._known.move_to_end(channel.channel_id)
        while len(self._known) > self._size_max:
            self._known.popitem(last=False)

    def booked(self, channel: Channel, max_claimable_atomic: int, price_atomic: int, signature: str) -> None:
        """The voucher was booked on `channel` (as it was before): its new charged total and ceiling."""
        self.remember(
            dataclasses.replace(
                channel,
                charged_atomic=max_claimable_atomic,
                signed_max_atomic=max_claimable_atomic,
                signature=signature,
                unsettled_atomic=channel.unsettled_atomic + price_atomic,
            )
        )

    def forget(self, channel_id: str) -> None:
        self._known.pop(channel_id, None)
