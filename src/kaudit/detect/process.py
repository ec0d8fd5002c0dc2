"""Streaming detection in a process of its own, fed the durable batches over a pipe.

:class:`DetectorProcess` is what ``kaudit serve`` runs by default: the same
:class:`~kaudit.detect.stream.DetectionCore` as the in-thread
:class:`~kaudit.detect.stream.StreamingDetector`, but in a child process (``spawn``),
so flattening and rule evaluation do not share the interpreter lock with the
acknowledgement path.

Each durable batch crosses as one bytes message: a small header, the cluster, the
lengths of the events' original lines and the lines themselves. The child decodes
and flattens them, runs the rules, stores new alerts and delivers them to its sinks,
then acknowledges the batch's sequence number with a metrics snapshot.

A batch stays queued in the server until it is acknowledged: ``submit`` waits once
``max_queued_events`` are unacknowledged (the receiver pushes back instead of memory
growing). If the child dies, a new one is started and every unacknowledged batch is
sent again (alert ids are deterministic, so an alert raised twice is stored and sent
once). A batch that kills the child three times in a row is given up, with an error
naming how many events were not evaluated. On :meth:`DetectorProcess.stop` the child
evaluates what is queued, saves its state and closes its sinks; it ignores SIGINT and
SIGTERM (a signal to the process group stops the server, which then stops the child).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from kaudit.detect.stream import (
    _Item,
    empty_snapshot,
    merge_snapshots,
    render_metrics,
)
from kaudit.errors import ConfigError, KauditError
from kaudit.model.documents import Record

log = logging.getLogger("kaudit.detect")

# seq, durable_at (monotonic, system-wide), duplicates, events, cluster bytes
_HEADER = struct.Struct("<QdIIH")
_STOP = b""  # the message that asks the child to finish
MAX_CRASHES = 3  # a batch that kills the child this often in a row is given up


def pack_batch(seq: int, records: Sequence[Record], cluster: str, duplicates: int) -> bytes:
    """One message: header, cluster, line lengths (uint32), the lines."""
    raws = [r.raw for r in records]
    c = cluster.encode()
    lengths = array("I", map(len, raws))
    head = _HEADER.pack(seq, time.monotonic(), duplicates, len(raws), len(c))
    return b"".join((head, c, lengths.tobytes(), *raws))


def unpack_batch(msg: bytes) -> tuple[int, _Item]:
    """The sequence number and the decoded batch of a :func:`pack_batch` message."""
    from kaudit.errors import Location
    from kaudit.model.codec import decode_event

    seq, durable_at, duplicates, n, clen = _HEADER.unpack_from(msg)
    pos = _HEADER.size
    cluster = msg[pos : pos + clen].decode()
    pos += clen
    lengths = array("I")
    lengths.frombytes(msg[pos : pos + 4 * n])
    pos += 4 * n
    raws: list[bytes] = []
    for ln in lengths:
        raws.append(msg[pos : pos + ln])
        pos += ln
    source = f"detection batch {seq}"
    events = [decode_event(r, Location(source, i + 1)) for i, r in enumerate(raws)]
    return seq, _Item(events, raws, cluster, duplicates, durable_at)


def _count(msg: bytes) -> int:
    return int(_HEADER.unpack_from(msg)[3])


@dataclass(slots=True)
class ChildSettings:
    """What the child needs to build its detector (plain data: it crosses ``spawn``)."""

    store_path: str
    rules_dirs: list[str]
    allowlist_file: str | None
    sink_specs: list[str]
    gather_secs: float = 0.2
    max_batch_events: int = 50_000
    save_interval_secs: float = 1.0
    recent_keys: int = 200_000
    metrics_interval_secs: float = 0.5
    log_level: str = "INFO"
    # Detection is background work: under a burst the acknowledgements get the CPU
    # first, and detection catches up (its backlog is bounded by max_queued_events).
    niceness: int = 0


def _child_main(settings: ChildSettings, data: Connection, status: Connection) -> None:
    """The detection process: evaluate batches from ``data`` until told to stop (or EOF)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if settings.niceness:
        with contextlib.suppress(OSError):
            os.nice(settings.niceness)
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    from kaudit.detect.rule import load_rules
    from kaudit.detect.stream import DetectionCore
    from kaudit.sinks import sink_from_spec

    try:
        rules = load_rules(settings.rules_dirs, allowlist=settings.allowlist_file)
        sinks = [sink_from_spec(s) for s in settings.sink_specs]
        core = DetectionCore(
            settings.store_path,
            rules,
            sinks,
            save_interval_secs=settings.save_interval_secs,
            recent_keys=settings.recent_keys,
        )
    except Exception as exc:
        status.send(("error", type(exc).__name__, str(exc)))
        return

    def report(msg: tuple[object, ...]) -> None:
        # A server that is gone (killed) hears nothing; what was received is evaluated.
        with contextlib.suppress(OSError):
            status.send(msg)

    report(("ready", core.snapshot()))
    core.before_delivery = lambda: report(("metrics", core.snapshot()))
    stop = False
    while not stop:
        if not data.poll(settings.metrics_interval_secs):
            report(("metrics", core.snapshot()))
            continue
        try:
            msg = data.recv_bytes()
        except EOFError:
            break
        if msg == _STOP:
            break
        msgs = [msg]
        events = _count(msg)
        # Gather for a moment: the pack costs far less per event on larger batches.
        deadline = time.monotonic() + settings.gather_secs
        while events < settings.max_batch_events:
            left = deadline - time.monotonic()
            if left <= 0 or not data.poll(left):
                break
            try:
                msg = data.recv_bytes()
            except EOFError:
                stop = True
                break
            if msg == _STOP:
                stop = True
                break
            msgs.append(msg)
            events += _count(msg)
        items: list[_Item] = []
        last_seq = 0
        for m in msgs:
            last_seq = int(_HEADER.unpack_from(m)[0])
            try:
                items.append(unpack_batch(m)[1])
            except KauditError as exc:
                core.fail(_count(m), str(exc))
        if items:
            core.run(items)
        report(("done", last_seq, core.snapshot()))
    core.close()
    report(("bye", core.snapshot()))


@dataclass(slots=True)
class _Pending:
    seq: int
    events: int
    blob: bytes


@dataclass(slots=True)
class _Child:
    process: Any
    data: Connection
    status: Connection
    alive: bool = True
    finished: bool = False
    failed: bool = False  # it could not start (its rules or sinks)
    sender: threading.Thread | None = None
    acked: list[int] = field(default_factory=list)


class DetectorProcess:
    """Streaming detection in a child process (see the module doc).

    The same ``submit`` / ``stop`` / ``render_metrics`` / ``queued_events`` as
    :class:`~kaudit.detect.stream.StreamingDetector`.
    """

    def __init__(
        self,
        settings: ChildSettings,
        *,
        max_queued_events: int = 1_000_000,
        start_timeout_secs: float = 120.0,
        restart_delay_secs: float = 1.0,
        wait_ready: bool = True,
        context: str = "spawn",
    ) -> None:
        self.settings = settings
        self.max_queued_events = max_queued_events
        self.start_timeout_secs = start_timeout_secs
        self.restart_delay_secs = restart_delay_secs
        self._ctx: Any = multiprocessing.get_context(context)
        self._cv = threading.Condition()
        self._pending: deque[_Pending] = deque()
        self._next_seq = 1
        self._queued = 0
        self._stopping = False
        self._base = empty_snapshot()  # counters of children that have exited
        self._snap = empty_snapshot()  # the running child's latest snapshot
        self._ready: dict[int, _Pending] = {}  # packed, waiting for an earlier one
        self._sendable = 1  # the first sequence number not yet in _pending
        self._child: _Child | None = None
        self.restarts = 0
        self.given_up_events = 0
        child = self._spawn(wait=wait_ready)
        self._supervisor = threading.Thread(
            target=self._supervise, args=(child,), name="kaudit-detect-supervisor", daemon=True
        )
        self._supervisor.start()

    @property
    def queued_events(self) -> int:
        return self._queued

    @property
    def pid(self) -> int | None:
        child = self._child
        return int(child.process.pid) if child is not None else None

    # --- the server's side -----------------------------------------------------------

    def submit(self, records: list[Record], *, cluster: str = "", duplicates: int = 0) -> None:
        """Queue a batch that is durable now (``duplicates``: how many the store dropped)."""
        if not records or duplicates >= len(records):
            return
        n = len(records)
        with self._cv:
            while self._queued and self._queued + n > self.max_queued_events:
                self._cv.wait(1.0)
            seq = self._next_seq
            self._next_seq += 1
            self._queued += n
        blob = pack_batch(seq, records, cluster, duplicates)
        with self._cv:
            # In sequence order: a later submit may have packed first.
            self._ready[seq] = _Pending(seq, n, blob)
            while self._sendable in self._ready:
                self._pending.append(self._ready.pop(self._sendable))
                self._sendable += 1
            self._cv.notify_all()

    def stop(self) -> None:
        """The child evaluates everything queued, saves its state and closes its sinks."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._supervisor.join()

    def render_metrics(self) -> str:
        """Prometheus text lines for ``/metrics`` (from the child's latest snapshot)."""
        with self._cv:
            snap = merge_snapshots(self._base, self._snap)
        return render_metrics(snap, self._queued) + (
            "# HELP kaudit_detect_process_restarts_total Detection processes restarted after "
            "exiting unexpectedly.\n"
            "# TYPE kaudit_detect_process_restarts_total counter\n"
            f"kaudit_detect_process_restarts_total {self.restarts}\n"
            "# HELP kaudit_detect_given_up_events_total Events not evaluated: their batch "
            f"killed the detection process {MAX_CRASHES} times, or it could not be restarted.\n"
            "# TYPE kaudit_detect_given_up_events_total counter\n"
            f"kaudit_detect_given_up_events_total {self.given_up_events}\n"
        )

    # --- the child's lifecycle -------------------------------------------------------

    def _spawn(self, *, wait: bool = True) -> _Child:
        """A new child; with ``wait``, once it is ready (raising what stopped it).

        Without ``wait`` the batches already queue in the pipe while the child loads
        its rules, and a failure to start is logged and retried by the supervisor.
        """
        data_r, data_w = self._ctx.Pipe(duplex=False)
        status_r, status_w = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_child_main,
            args=(self.settings, data_r, status_w),
            name="kaudit-detect",
            daemon=True,
        )
        proc.start()
        data_r.close()
        status_w.close()
        child = _Child(proc, data_w, status_r)
        if not wait:
            return self._start_sending(child)
        try:
            if not status_r.poll(self.start_timeout_secs):
                raise KauditError(
                    f"detection process: not ready after {self.start_timeout_secs:g} s"
                )
            msg = status_r.recv()
        except (EOFError, OSError, KauditError) as exc:
            self._discard(child)
            if isinstance(exc, KauditError):
                raise
            raise KauditError(
                f"detection process: exited while starting (exit code {proc.exitcode})"
            ) from None
        if msg[0] == "error":
            self._discard(child)
            raise ConfigError(f"detection: {msg[2]}")
        with self._cv:
            self._snap = msg[1]
        return self._start_sending(child)

    def _start_sending(self, child: _Child) -> _Child:
        child.sender = threading.Thread(
            target=self._send, args=(child,), name="kaudit-detect-send", daemon=True
        )
        self._child = child
        child.sender.start()
        return child

    def _discard(self, child: _Child) -> None:
        child.alive = False
        with self._cv:
            self._cv.notify_all()
        child.process.join(10)
        if child.process.is_alive():
            child.process.kill()
            child.process.join()
        if child.sender is not None:
            child.sender.join()
        child.data.close()
        child.status.close()

    def _send(self, child: _Child) -> None:
        """Send every unacknowledged batch in order, then (when stopping) the stop message."""
        with self._cv:
            nxt = self._pending[0].seq if self._pending else self._sendable
        while True:
            with self._cv:
                while child.alive and not self._stopping and nxt >= self._sendable:
                    self._cv.wait()
                if not child.alive:
                    return
                if nxt >= self._sendable:
                    if self._ready:  # stopping: a submit is still packing
                        self._cv.wait(0.1)
                        continue
                    blob = _STOP
                else:
                    blob = self._pending[nxt - self._pending[0].seq].blob
            try:
                child.data.send_bytes(blob)
            except OSError:
                return
            if blob == _STOP:
                return
            nxt += 1

    def _receive(self, child: _Child) -> None:
        """Acknowledgements and metrics from ``child`` until it exits."""
        while True:
            try:
                msg = child.status.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            with self._cv:
                if kind == "done":
                    seq, snap = msg[1], msg[2]
                    while self._pending and self._pending[0].seq <= seq:
                        self._queued -= self._pending.popleft().events
                    child.acked.append(seq)
                    if snap is not None:
                        self._snap = snap
                    self._cv.notify_all()
                elif kind == "error":
                    child.failed = True
                    log.error("detection process: cannot start: %s", msg[2])
                elif kind in ("ready", "metrics", "bye"):
                    self._snap = msg[1]
                    if kind == "bye":
                        child.finished = True

    def _supervise(self, child: _Child) -> None:
        crashes = 0  # exits in a row with the same batch first in the queue
        head: int | None = None
        failures = 0  # starts in a row that failed (rules or sinks unusable)
        while True:
            self._receive(child)
            self._discard(child)
            with self._cv:
                self._base = merge_snapshots(self._base, self._snap)
                self._snap = empty_snapshot()
                done = child.finished and not self._pending
                first = self._pending[0].seq if self._pending else None
            if done:
                return
            if child.failed:
                failures += 1
            else:
                failures = 0
                crashes = crashes + 1 if first is not None and first == head else 1
                head = first
                if crashes >= MAX_CRASHES and first is not None:
                    self._give_up_head(crashes)
                    crashes, head = 0, None
                log.error(
                    "detection process exited (exit code %s): restarting it; %d queued "
                    "events are sent again",
                    child.process.exitcode,
                    self._queued,
                )
            while True:
                if self._stopping and failures >= MAX_CRASHES:
                    self._give_up_all()
                    return
                time.sleep(min(30.0, self.restart_delay_secs * 2 ** min(failures, 5)))
                try:
                    child = self._spawn(wait=False)
                    self.restarts += 1
                    break
                except (KauditError, OSError) as exc:
                    failures += 1
                    log.error("detection process: restart failed: %s", exc)

    def _give_up_head(self, crashes: int) -> None:
        with self._cv:
            lost = self._pending.popleft()
            self._queued -= lost.events
            self._base["errors"] += 1
            self._cv.notify_all()
        self.given_up_events += lost.events
        log.error(
            "detection process: batch %d killed it %d times: its %d events are not evaluated",
            lost.seq,
            crashes,
            lost.events,
        )

    def _give_up_all(self) -> None:
        with self._cv:
            lost = self._queued
            self._pending.clear()
            self._queued = 0
            self._cv.notify_all()
        self.given_up_events += lost
        log.error(
            "detection process: stopping without it: %d queued events are not evaluated", lost
        )


def settings_for(
    store_path: str | os.PathLike[str],
    rules_dirs: Sequence[str],
    allowlist_file: str | os.PathLike[str] | None,
    sink_specs: Sequence[str],
    **kw: Any,
) -> ChildSettings:
    return ChildSettings(
        str(store_path),
        [str(d) for d in rules_dirs],
        str(allowlist_file) if allowlist_file is not None else None,
        list(sink_specs),
        **kw,
    )


__all__ = ["ChildSettings", "DetectorProcess", "pack_batch", "settings_for", "unpack_batch"]
