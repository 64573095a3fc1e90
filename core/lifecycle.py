"""A job's lifecycle: the named transitions of its record, and the table of those allowed.

Every change of a job's status goes through one of these functions, applied through the job
store's atomic read-modify-write (``JobStore.modify``): each takes the record as read, changes
it in place and returns True, or False when there is nothing to write. A store may apply one
twice (a concurrent write): they depend on nothing but the record and their arguments.

A transition the table does not allow from the record's status raises ``TransitionRefused``,
which carries the record as read: nothing is written, and a final job stays final.

    queued ──start──▶ processing ──complete──────────────▶ completed
      │  ▲               │ │ │    ──complete_with_errors──▶ completed_with_errors
      │  └─requeue───────┘ │ │    ──fail──────────────────▶ failed
      │  └─hand_back───────┘ └────cancel──────────────────▶ cancelled
      ├──fail──▶ failed (past its attempts, before a start)
      └──request_cancel──▶ cancelled (a stream that has run stays queued, flagged)

``progress`` writes a running job's figures (frames, files, a stream's live state) and
changes no status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.backends.outbox import FINAL_SEQUENCE
from core.errors import CattleCounterError
from core.jobs import MAX_STREAM_GAPS_SHOWN, Job, JobError, JobKind, JobStatus, LiveInfo, utcnow

QUEUED, PROCESSING = JobStatus.QUEUED, JobStatus.PROCESSING
COMPLETED, COMPLETED_WITH_ERRORS = JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS
FAILED, CANCELLED = JobStatus.FAILED, JobStatus.CANCELLED

# transition -> {status it may start from: the statuses it may lead to}. A status missing from
# a transition's row refuses it; the final statuses are in no row.
ALLOWED: Mapping[str, Mapping[JobStatus, frozenset[JobStatus]]] = {
    # a queued stream that has run already stays queued, flagged: its next run finalises it
    "request_cancel": {QUEUED: frozenset({CANCELLED, QUEUED}), PROCESSING: frozenset({PROCESSING})},
    # processing again: a redelivery after a worker died mid-run
    "start": {QUEUED: frozenset({PROCESSING}), PROCESSING: frozenset({PROCESSING})},
    "progress": {PROCESSING: frozenset({PROCESSING})},
    "complete": {PROCESSING: frozenset({COMPLETED})},
    "complete_with_errors": {PROCESSING: frozenset({COMPLETED_WITH_ERRORS})},
    # from queued: past its attempts before it could start again
    "fail": {QUEUED: frozenset({FAILED}), PROCESSING: frozenset({FAILED})},
    "cancel": {PROCESSING: frozenset({CANCELLED})},  # the worker stopped on a user's cancel
    "requeue": {PROCESSING: frozenset({QUEUED})},  # a failed attempt, retried
    # no failed attempt: a worker shutting down or its disk failing, or the tenant at its quota
    "hand_back": {QUEUED: frozenset({QUEUED}), PROCESSING: frozenset({QUEUED})},
}


# a transition with its arguments bound (functools.partial), as JobStore.modify applies it
Transition = Callable[[Job], bool]


class TransitionRefused(CattleCounterError):
    """The job's status does not allow this change (a final job stays as it ended)."""

    code = "transition_refused"
    http_status = 409

    def __init__(self, job: Job, transition: str) -> None:
        allowed = ", ".join(status.value for status in ALLOWED[transition]) or "no status"
        super().__init__(f"job {job.id} is {job.status.value}: {transition} is allowed only from {allowed}")
        self.job = job  # the record as read, unchanged
        self.transition = transition


def _check(job: Job, transition: str) -> None:
    if job.status not in ALLOWED[transition]:
        raise TransitionRefused(job, transition)


def _move(job: Job, transition: str, status: JobStatus) -> None:
    """Set ``status``, which the table must allow ``transition`` to lead to from the current one."""
    _check(job, transition)
    if status not in ALLOWED[transition][job.status]:
        raise TransitionRefused(job, transition)
    job.status = status


# --- the transitions ------------------------------------------------------------------------


def request_cancel(job: Job) -> bool:
    """A user's DELETE. Queued: cancelled now (the worker will skip its message). Processing:
    flagged, and the worker stops at its next batch (a stream stops and ends ``completed``,
    its outputs final). Asked again: nothing to write.

    A stream waiting for its next run (handed back, retried) has counted already: it stays
    queued, flagged, and the next worker to take it finalises it at once (the last window,
    stats.json, a playlist that ends) and completes it, as a DELETE of a running one does."""
    _check(job, "request_cancel")
    waits_for_next_run = job.kind is JobKind.STREAM and job.started_at is not None
    if job.status is QUEUED and not waits_for_next_run:  # flagged or not (a run handed back)
        _move(job, "request_cancel", CANCELLED)
        job.finished_at = utcnow()
    elif job.cancel_requested:
        return False
    job.cancel_requested = True
    return True


def start(job: Job, delivery: int) -> bool:
    """A worker takes the job: processing, with ``delivery`` as its attempts so far."""
    _move(job, "start", PROCESSING)
    job.attempts = delivery
    job.started_at = job.started_at or utcnow()
    job.progress, job.frames_done, job.error = 0.0, 0, None
    return True


def progress(job: Job, report: Report) -> bool:
    """A running job's figures (``report`` writes them); its status stays processing."""
    _check(job, "progress")
    report.write(job)
    return True


def complete(job: Job, results: Results) -> bool:
    """Done, its outputs stored."""
    _move(job, "complete", COMPLETED)
    _finish_with(job, results)
    return True


def complete_with_errors(job: Job, results: Results) -> bool:
    """Done, some of its files failed: the good ones' results stand (images jobs only)."""
    _move(job, "complete_with_errors", COMPLETED_WITH_ERRORS)
    _finish_with(job, results)
    return True


def fail(job: Job, error: JobError, results: Results | None = None) -> bool:
    """Failed with ``error``. ``results``: an images job whose every file failed keeps its
    outputs (results.jsonl lists each file's error)."""
    _move(job, "fail", FAILED)
    job.error = error
    if results is None:
        job.finished_at = utcnow()
        job.eta_seconds = None
    else:
        _finish_with(job, results)
    return True


def cancel(job: Job) -> bool:
    """The worker stopped the job on its user's request."""
    _move(job, "cancel", CANCELLED)
    job.finished_at = utcnow()
    job.eta_seconds = None
    return True


def requeue(job: Job, error: JobError) -> bool:
    """A failed attempt: back to the queue, to be retried (here or on another worker)."""
    _move(job, "requeue", QUEUED)
    job.fps, job.eta_seconds = None, None
    job.error = error
    return True


def hand_back(job: Job) -> bool:
    """Back to the queue with no failed attempt counted (see ``Job.handed_back``)."""
    _move(job, "hand_back", QUEUED)
    job.fps, job.eta_seconds = None, None
    job.handed_back += 1
    return True


def _finish_with(job: Job, results: Results) -> None:
    results.figures.write(job)
    job.progress = 1.0
    job.eta_seconds = 0.0
    job.outputs = results.outputs
    job.counts = job.counts if results.counts is None else results.counts
    job.finished_at = utcnow()


@dataclass(frozen=True)
class Results:
    """What a finished run leaves on its record: its stored outputs, its counts (None: as
    they stand) and its kind's final figures."""

    outputs: dict[str, str]
    counts: dict[str, Any] | None
    figures: Report


# --- the figures a running (or finishing) job reports -----------------------------------------


class Report(Protocol):
    def write(self, job: Job) -> None:
        """Write these figures on the record (never its status)."""


class FrameFigures(Protocol):
    """A video run's progress, as the engine reports it (ml_engine.pipeline.Progress)."""

    @property
    def frames_done(self) -> int: ...
    @property
    def frames_total(self) -> int | None: ...
    @property
    def fps(self) -> float: ...
    @property
    def eta_s(self) -> float | None: ...
    @property
    def fraction(self) -> float | None: ...


@dataclass(frozen=True)
class FrameProgress:
    figures: FrameFigures

    def write(self, job: Job) -> None:
        job.frames_done = self.figures.frames_done
        job.frames_total = self.figures.frames_total
        job.fps = round(self.figures.fps, 2)
        job.eta_seconds = None if self.figures.eta_s is None else round(self.figures.eta_s, 1)
        if self.figures.fraction is not None:  # None: the container says neither frame count nor duration
            job.progress = round(min(self.figures.fraction, 0.99), 4)  # 1.0 only once outputs are stored


@dataclass(frozen=True)
class FileProgress:
    """An images job after a file (or between the tile batches of a large raster)."""

    done: int
    failed: int
    total: int
    tiles_done: int = 0
    tiles_total: int | None = None

    def write(self, job: Job) -> None:
        job.files_done, job.files_failed = self.done, self.failed
        job.tiles_done, job.tiles_total = self.tiles_done, self.tiles_total
        settled: float = self.done + self.failed
        if self.tiles_total:  # the raster in progress counts for its share of one file
            settled += self.tiles_done / self.tiles_total
        job.progress = round(min(settled / max(self.total, 1), 0.99), 4)  # 1.0 only once outputs are stored


@dataclass(frozen=True)
class FramesCounted:
    """A video's final figure: the exact count (the last progress report may have been
    throttled, and the total was an estimate when the container did not say)."""

    frames: int

    def write(self, job: Job) -> None:
        job.frames_done = job.frames_total = self.frames


@dataclass(frozen=True)
class FilesCounted:
    """An images job's final figures: its files, good and failed."""

    done: int
    failed: int

    def write(self, job: Job) -> None:
        job.files_done, job.files_failed, job.files_total = self.done, self.failed, self.done + self.failed
        job.tiles_done, job.tiles_total = 0, None


@dataclass(frozen=True)
class StreamStopped:
    """A stopped stream is no longer connected; its live state stays as its last report said
    (its frames are counted in ``job.live`` as it ran)."""

    def write(self, job: Job) -> None:
        live = job.live.model_copy() if job.live is not None else LiveInfo()
        live.connected = False
        job.live = live


class LiveFigures(Protocol):
    """A running stream's status, as the engine reports it (ml_engine.live.LiveStatus)."""

    @property
    def connected(self) -> bool: ...
    @property
    def frames_received(self) -> int: ...
    @property
    def frames_processed(self) -> int: ...
    @property
    def frames_dropped(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def latency_p50_s(self) -> float | None: ...
    @property
    def latency_p95_s(self) -> float | None: ...
    @property
    def latency_from(self) -> str | None: ...
    @property
    def streaming_s(self) -> float: ...
    @property
    def counts(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LiveProgress:
    """A running stream's report: its status, the gaps since the last report, its listed
    outputs if they changed, and ``forgive``: up long enough that its deliveries so far are
    no failed attempts."""

    status: LiveFigures
    new_gaps: list[dict[str, Any]]
    outputs: dict[str, str] | None = None
    forgive: bool = False

    def write(self, job: Job) -> None:
        status, live = self.status, (job.live or LiveInfo()).model_copy()
        live.connected = status.connected
        live.frames_received, live.frames_processed = status.frames_received, status.frames_processed
        live.frames_dropped, live.reconnects = status.frames_dropped, status.reconnects
        live.latency_p50_s, live.latency_p95_s = status.latency_p50_s, status.latency_p95_s
        live.latency_from = status.latency_from
        live.streaming_s = round(status.streaming_s, 1)
        live.gaps = (live.gaps + self.new_gaps)[-MAX_STREAM_GAPS_SHOWN:]
        live.gaps_total += len(self.new_gaps)
        if status.connected and live.stream_started_at is None:
            live.stream_started_at = utcnow()
        job.live = live
        job.counts = status.counts
        job.frames_done = status.frames_processed
        if self.outputs is not None:
            job.outputs = {**job.outputs, **self.outputs}
        if self.forgive:
            job.handed_back = job.attempts


@dataclass(frozen=True)
class RunStarted:
    """A stream's run began (the attempts rule counts from here); not connected yet."""

    def write(self, job: Job) -> None:
        job.live = (job.live or LiveInfo()).model_copy(update={"run_started_at": utcnow(), "connected": False})


@dataclass(frozen=True)
class WindowClosed:
    """A stream's counting window closed; ``outputs``: its listed outputs, if they changed."""

    window: dict[str, Any]
    outputs: dict[str, str] | None = None

    def write(self, job: Job) -> None:
        job.live = (job.live or LiveInfo()).model_copy(update={"last_window": self.window})
        if self.outputs is not None:
            job.outputs = {**job.outputs, **self.outputs}


def out_of_event_numbers(live: LiveInfo) -> bool:
    """Event webhooks are numbered below the job's final webhook (FINAL_SEQUENCE), which must
    stay its last: ~115 days of a busy gate at 6 a minute. Past that, events are counted only."""
    return live.events_sent + 1 >= FINAL_SEQUENCE


@dataclass
class EventsSent:
    """A stream's event webhook takes the next number, or, once they are used up, its
    ``events`` are counted as not sent. ``unsent`` says which, after ``write`` (which a
    conflicting write may run again: the last run is the one stored)."""

    events: int
    unsent: int = field(default=0, init=False)

    def write(self, job: Job) -> None:
        live = (job.live or LiveInfo()).model_copy()
        self.unsent = 0
        if out_of_event_numbers(live):  # said in the record and in metrics, not only in a log
            self.unsent = self.events
            live.events_unsent += self.unsent
        else:
            live.events_sent += 1
        job.live = live
