"""Reading and vouching for a large export in a process of its own, a batch ahead of the writer.

The writer waits on the database for most of an import (its statements, the server's index work);
reading a batch and parsing it (``_SalesParser.vouch``) needs no database and no application. So a
child process does that for the next batch while the writer writes this one, on the machine's other
core, and sends each batch over a one-way pipe as columns (a pickle of 5.5 MB per 20,000 rows,
about 100 ms both sides). The parent still settles every suspect row (``_SalesParser.settle``: the
errors are worded there, in the user's language) and decides everything else.

The pipe is the flow control: the child blocks sending its next batch until the writer takes it, so
at most one batch waits and memory stays flat whatever the file's size. The parent holds the only
read end and the child the only write end, so either one's death is seen by the other: the writer
gets end-of-file (:class:`ChildFailed`), the child a broken pipe (it ends).
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import pickle
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from core.importing import common
from core.importing.batches import arrow_batches
from core.importing.columns import _Header

AHEAD_BYTES = 16 << 20  # smaller files are read in the writer's process: a child's start costs ~1 s
_END = b""  # what the child sends after its last batch
log = logging.getLogger(__name__)

# (record count, suspect records by batch index, _Vouched or None for an empty batch, position, unreadable)
VouchedBatch = tuple[int, dict[int, Any], Any, int | None, tuple[int, str] | None]


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
    """The reading process stopped: its own error (its traceback is the message), or its death."""


class Reader:
    """A started child reading an export. Iterating gives its batches in file order, as
    ``core.importing.batches`` gives records but vouched for (:data:`VouchedBatch`); :meth:`close`
    stops the child when the writer stops early (a refused file, an error)."""

    def __init__(self, child, connection):
        self.child, self.connection = child, connection

    def __iter__(self) -> Iterator[VouchedBatch]:
        while (data := self._receive()) != _END:
            item = pickle.loads(data)
            del data  # the batch's bytes go before the writer works on it
            if isinstance(item, ChildFailed):
                raise item
            yield item
        self.child.join()

    def _receive(self) -> bytes:
        """The child's next message; ChildFailed when it ended without sending one (killed, out of
        memory): its write end is then closed, and reading meets end-of-file rather than a hang."""
        wait([self.connection, self.child.sentinel])
        try:
            if self.connection.poll():
                return self.connection.recv_bytes()
        except (EOFError, OSError):
            pass
        self.child.join()
        raise ChildFailed(f"the import's reading process ended unexpectedly (exit code {self.child.exitcode})")

    def close(self) -> None:
        if self.child.is_alive():
            self.child.terminate()
        self.child.join()
        self.connection.close()


def start(plan: Plan) -> Reader | None:
    """Start reading ``plan``'s export in a child process; None when this host cannot start one (no
    process may be created): the caller then reads the file itself, as a small one."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads and connections
    receiving = sending = None
    try:
        receiving, sending = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(plan, sending), name="pilot-import-reader", daemon=True)
        child.start()
    except OSError as exc:
        for end in (receiving, sending):
            if end is not None:
                end.close()
        log.warning("import: no reading process (%s); the file is read in this process", exc)
        return None
    sending.close()  # the child's now: its death closes the last write end
    return Reader(child, receiving)


def _child(plan: Plan, sending) -> None:
    """The child's work: every batch of the file read and vouched for, then the end (or its error).
    A writer gone (a broken pipe) ends it."""
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
            del records  # the reader's own copy goes when it reads the next batch
            sending.send_bytes(pickle.dumps((count, suspects, vouched, position, unreadable), pickle.HIGHEST_PROTOCOL))
            del suspects, vouched
        sending.send_bytes(_END)
    except (BrokenPipeError, ConnectionResetError):
        return  # the writer is gone: nobody to tell
    except BaseException:  # reported to the writer, which raises it
        sending.send_bytes(pickle.dumps(ChildFailed(traceback.format_exc())))
    finally:
        sending.close()
