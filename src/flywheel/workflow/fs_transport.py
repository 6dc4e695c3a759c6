"""The embedded broker: kombu's filesystem transport with atomic message writes.

kombu's own ``filesystem`` transport creates the message file and then writes it; a
consumer in another process may move and read the file in between and get an empty or
partial message (observed under load as ``JSONDecodeError`` and a lost step). This
subclass writes each message under a hidden temporary name and renames it into place —
an atomic step on POSIX — so a consumer only ever sees complete messages.

Registered with kombu as the ``flywheelfs://`` transport by :mod:`.celery_app`.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps

ALIAS = "flywheelfs"


class Channel(filesystem.Channel):
    """Writes each message to a temporary file, then renames it into the queue folder."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        temporary = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(temporary, "wb") as fh:
                fh.write(str(dumps(payload)).encode())  # type: ignore[no-untyped-call]
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """The filesystem transport using :class:`Channel`."""

    Channel = Channel
    driver_name = ALIAS


def register() -> None:
    """Make ``flywheelfs://`` broker URLs resolve to this transport (idempotent)."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
