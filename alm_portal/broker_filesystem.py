"""kombu's filesystem transport (the embedded broker of `make run`) with an atomic put.

kombu writes a message by creating ``<ms>_<uuid>.<queue>.msg`` in the queue folder and then writing into it,
while a consumer moves and reads any such file it sees without taking the writer's lock: under load the
consumer can read the file before a byte is written, and the worker dies on "Expecting value: line 1
column 1" (celery/kombu#1551), which stops the whole demo. Here a message is written under a name no
consumer matches and renamed into place, which is atomic within one filesystem: a consumer sees a whole
message or none. A message file that cannot be decoded anyway (left by a plain filesystem transport) is
skipped with a warning instead of ending the worker: the job rows are the record, and the dispatcher sends
again what nobody picked up.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

SCHEME = "alm-filesystem"

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    # kombu's own stubs disagree between the virtual base (queue, message) and this transport (queue, payload,
    # **kwargs); kombu calls it positionally, so this keeps the filesystem transport's signature.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # The same name kombu uses, so consumers (and the metrics' queue depth) find the finished file.
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # "<ms>_<uuid>.<queue>.msg.partial": kombu matches the part after the first dot, "<queue>.msg", exactly.
        partial = f"{final}.partial"
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        try:
            return super()._get(queue)
        except ValueError:  # kombu removed the file before decoding it: only this nudge is lost
            logger.warning("skipped an unreadable message of queue %s; the dispatcher re-sends job nudges", queue)
            raise Empty() from None


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    """Make ``alm-filesystem://`` a broker URL every process (web, worker, beat) can connect to."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
