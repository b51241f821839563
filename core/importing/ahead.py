"""Reading and vouching for a large export in a process of its own, batches ahead of the writer.

The writer waits on the database for most of an import (its statements, the server's index work);
reading a batch and parsing it (``_SalesParser.vouch``) needs no database and no application. So a
child process does that for the next batches while the writer writes this one, on the machine's
other core, and hands each batch over as columns (a pickle of about 100 ms per 20,000 rows, both
sides; 5.5 MB). The parent still settles every suspect row (``_SalesParser.settle``: the errors are worded
there, in the user's language) and decides everything else; the child only reads and vouches.

At most ``DEPTH`` batches wait in the pipe: memory stays flat whatever the file's size.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import pickle
import queue as queues
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.importing import common
from core.importing.batches import arrow_batches
from core.importing.columns import _Header

AHEAD_BYTES = 16 << 20  # smaller files are read in the writer's process: a child's start costs ~1 s
DEPTH = 1  # batches the child may have vouched for before the writer takes them
_POLL_SECONDS = 1.0  # how often a waiting writer checks that the child still lives
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What the child needs to read and vouch as the parent would (everything picklable)."""

    path: str
    offset: int
    first_line: int
    delimiter: str
    header: _Header
    organisation_id: int
    secret: str
    latest: dt.datetime  # the parser's bound on purchase dates, fixed by the parent
    batch_size: int


class ChildFailed(RuntimeError):
    """The reading process stopped on an error of its own (its traceback is the message)."""


class Reader:
    """A started child reading an export: iterate for its batches, in file order, as
    ``core.importing.batches`` gives records but vouched for: (record count, suspect records by batch
    index, ``_Vouched`` or None for an empty batch, position, unreadable). :meth:`close` stops the
    child when the writer stops early (a refused file, an error)."""

    def __init__(self, child, channel):
        self.child, self.channel = child, channel

    def __iter__(self) -> Iterator[tuple[int, dict, object, int | None, tuple[int, str] | None]]:
        while (item := self._next()) is not None:
            if isinstance(item, ChildFailed):
                raise item
            yield pickle.loads(item)
        self.child.join()

    def _next(self):
        while True:
            try:
                return self.channel.get(timeout=_POLL_SECONDS)
            except queues.Empty:
                if not self.child.is_alive():
                    try:  # it may have put its last item just before it ended
                        return self.channel.get(timeout=_POLL_SECONDS)
                    except queues.Empty:
                        raise ChildFailed(
                            f"the import's reading process ended unexpectedly (exit code {self.child.exitcode})"
                        ) from None

    def close(self) -> None:
        if self.child.is_alive():
            self.child.terminate()
            self.child.join()
        self.channel.close()


def start(plan: Plan) -> Reader | None:
    """Start reading ``plan``'s export in a child process; None when this host cannot start one (no
    process or semaphore may be created): the caller then reads the file itself, as for a small one."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads and connections
    try:
        channel = context.Queue(maxsize=DEPTH)
        child = context.Process(target=_child, args=(plan, channel), name="pilot-import-reader", daemon=True)
        child.start()
    except OSError as exc:
        log.warning("import: no reading process (%s); the file is read in this process", exc)
        return None
    return Reader(child, channel)


def _child(plan: Plan, channel) -> None:
    """The child's work: every batch of the file read and vouched for, then None."""
    try:
        from core.importing.result import ImportResult
        from core.importing.validate import _SalesParser

        common.BATCH_SIZE = plan.batch_size
        parser = _SalesParser(plan.header, plan.organisation_id, plan.secret, ImportResult(kind="sales"))
        parser.latest = plan.latest
        batches = arrow_batches(Path(plan.path), plan.offset, plan.first_line, len(plan.header.fields), plan.delimiter)
        for records, position, unreadable in batches:
            count = len(records)
            vouched = parser.vouch(records) if count else None
            suspects = {index: records[index] for index in vouched.suspects} if vouched else {}
            del records  # before the next batch is read
            # Pickled here, so that a batch waiting for the writer is held as bytes (about a seventh of
            # its objects' memory) rather than by the queue's feeder thread as objects.
            channel.put(pickle.dumps((count, suspects, vouched, position, unreadable), pickle.HIGHEST_PROTOCOL))
            del suspects, vouched
        channel.put(None)
    except BaseException:  # reported to the parent, which raises it
        channel.put(ChildFailed(traceback.format_exc()))
    channel.close()
    channel.join_thread()
