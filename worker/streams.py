"""Running a stream job: the engine's StreamRun, fed and watched by the service.

A stream job comes from the stream queue and runs for as long as the stream does: the lease
is renewed all along (LeaseKeeper), and the run:

- reads its source URL from the job's secret blob and checks it again (STREAM_ALLOWED_NETWORKS
  may have changed since the submit; the host may resolve elsewhere now; a DNS failure is
  transient here, retried), and hands the engine the same check for every reconnect, and an
  egress proxy (core.egress_proxy) that checks every HTTP(S) request of an HLS source;
- resumes what an earlier run left: the state blob (running totals, window and segment
  numbers) and windows.jsonl, which the engine appends to;
- reports to the record every PROGRESS_INTERVAL_S (``job.counts`` and ``job.live``), uploads
  the files the engine reports (and deletes the ones it retired), stores the resume state at
  every window, feeds Prometheus, and sends line/zone events as aggregated webhooks;
- stores its files best effort (``worker/stream_storage.py``), as it writes the record: a storage
  blip leaves them pending, and they (and the newest resume state) are stored at the next
  callback. Only storage that keeps failing for STORAGE_OUTAGE_LIMIT_S, or a non-transient
  error, ends the run (retried).

How it ends:
- DELETE (cancel_requested), ``duration_s``/MAX_STREAM_SECONDS or ``end_at``: the engine
  finalises its outputs and the job is ``completed``. ``duration_s`` counts streaming time (from
  the first frame), so it never ends a source that has not delivered; ``end_at`` reached before
  any frame fails the job with ``stream_unavailable`` (a dead camera is no completed count). A stream DELETEd while it waited for its
  next run stays queued, flagged: the next run stops at once and finalises what it resumed;
- the worker shuts down: the job is handed back (no failed attempt) and resumes elsewhere;
- the lease is lost: another worker may be running it; nothing is recorded here;
- StreamUnavailable (the source never worked, see SourceOptions.first_connect_attempts) or
  a refused source: ``failed`` with its code;
- anything else is a failed attempt, retried. A stream's attempts are counted only while its
  runs die young: once a run has been up STREAM_STABLE_AFTER_S, the deliveries before it are
  forgiven (``handed_back``), so three pod deaths over a week never fail a camera.

The source URL (it may hold credentials) is handed to the engine only: never logged, never in
the record or an error message (the engine reports sources with redact_url).

Threads: the engine calls back, and asks ``should_stop``, on the run's own thread; only there
does ``should_stop`` read the job record (through the JobReporter, which no other thread uses).
Asked from any other thread (an engine helper), it answers the ``stop`` flag that the run's
thread sets: a slow job store never stalls the camera's reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import lifecycle, metrics
from core.backends import Backends
from core.backends.outbox import FINAL_SEQUENCE, WebhookEvent, event_id
from core.config import Settings
from core.egress_proxy import EgressProxy
from core.errors import CattleCounterError, JobCancelled, NotFound, StorageUnavailable, StreamUnavailable
from core.jobs import (
    Job,
    JobKind,
    output_blob_path,
    source_secret_path,
    stream_state_path,
    utcnow,
)
from core.netpolicy import check_stream_url, stream_addresses
from core.outputs import GAPS, WINDOWS
from worker.job_settings import detection_config
from worker.models import DetectorCache
from worker.processors import Finished
from worker.progress import JobReporter, StopReason
from worker.runner import JobRunner, ModelSlots
from worker.stream_events import EventAggregator
from worker.stream_storage import StreamStorage

if TYPE_CHECKING:  # the engine is imported when a stream runs: a file-only worker never loads it
    from ml_engine.live import CountEvent, LiveStatus, StreamConfig, StreamState

log = logging.getLogger(__name__)

STREAM_EVENTS = "stream.events"
# Uploads failing (storage down) for this long end the run: it is retried, and resumes from the
# last stored state. Shorter outages only delay the uploads (the files wait on the local disk).
STORAGE_OUTAGE_LIMIT_S = 10 * 60


class StreamRunner(JobRunner):
    """A JobRunner for the stream queue: receive → run the stream → settle, as for files."""

    def __init__(self, settings: Settings, backends: Backends, detectors: DetectorCache,
                 shutting_down: threading.Event, scratch_dir: Path | None = None) -> None:
        super().__init__(settings, backends, detectors, shutting_down, scratch_dir)
        self.queue = backends.stream_queue
        self.queue_depth = metrics.STREAM_QUEUE_DEPTH
        self.slots = ModelSlots(settings.stream_concurrency)
        self.processors = {JobKind.STREAM: StreamProcessor(settings, backends, detectors, self.scratch_dir)}

    def _retry_backoff_s(self, delivery: int) -> float:
        """Not doubled per delivery as for files: a stream's deliveries add up over its lifetime
        (every hand-back, every forgiven run), so a doubling would hold a stream that has simply
        run for weeks 15 minutes away from its camera after one failed run."""
        return self.settings.retry_backoff_s


class StreamProcessor:
    """Runs a stream job: the engine's StreamRun, fed and watched by a StreamSession."""

    busy = metrics.STREAMS_ACTIVE
    duration = None  # a stream runs for as long as it is asked to: no processing time to measure

    def __init__(self, settings: Settings, backends: Backends, detectors: DetectorCache, scratch_dir: Path) -> None:
        self.settings = settings
        self.backends = backends
        self.detectors = detectors
        self.scratch_dir = scratch_dir

    def run(self, job: Job, reporter: JobReporter) -> Finished:
        stats, outputs = self._process(job, reporter)
        if reporter.stop_reason in (StopReason.SHUTDOWN, StopReason.LEASE_LOST):
            raise JobCancelled()  # not the stream's end: handed back, or left to the lease's new holder
        return Finished(lifecycle.Results(outputs, stats.get("counts"), lifecycle.StreamStopped()))

    def ended(self, job_id: str) -> None:
        self._forget_source(job_id)

    def _forget_source(self, job_id: str) -> None:
        """A stream that has ended needs its URL no more: the secret goes now, not with the job."""
        try:
            self.backends.blobs.delete(source_secret_path(job_id))
        except CattleCounterError as exc:  # it goes with the job's other blobs on DELETE
            log.warning("could not delete the stream's source secret yet: %s", exc)

    def _process(self, job: Job, reporter: JobReporter) -> tuple[dict[str, Any], dict[str, str]]:
        from ml_engine.live import StreamRun

        networks = self.settings.stream_allowed_networks
        with tempfile.TemporaryDirectory(prefix=f"stream-{job.id}-", dir=self.scratch_dir,
                                         ignore_cleanup_errors=True) as work, \
                EgressProxy(functools.partial(stream_addresses, allowed_networks=networks)) as proxy:
            url = self._source_url(job)
            if not job.cancel_requested:  # stopped between two runs: it only finalises, it does not connect
                check_stream_url(url, networks)  # a DNS failure here is transient: retried, not failed
            output_dir = Path(work) / "outputs"
            output_dir.mkdir()
            resume = self._resume(job, output_dir)
            session = StreamSession(self.settings, self.backends, job, reporter, resume=resume)
            session.begin()
            detector = self.detectors.get(job.params.model_id)
            config = policed(stream_config(job, self.settings), networks, proxy)
            run = StreamRun(url, config, detector, output_dir, sink=session, resume=resume)
            try:
                stats, files = run.run()
            finally:
                session.send_events(final=True)
            if session.reached_end_at and not run.handed_back and stats["streaming_s"] == 0:
                raise StreamUnavailable(f"the stream {job.source} delivered no frame before its end_at")
            session.store_final(files)
            return stats, dict(session.outputs)

    def _source_url(self, job: Job) -> str:
        try:
            return self.backends.blobs.read_small(source_secret_path(job.id)).decode()
        except NotFound:
            raise CattleCounterError("the stream's source secret is gone (was the job deleted?)") from None

    def _resume(self, job: Job, output_dir: Path) -> StreamState | None:
        """An earlier run's state, and its windows.jsonl in ``output_dir`` for the engine to
        append to (how a stream resumes: ``ml_engine.live.state``).

        Raises:
            InvalidInput: the stored state is of another version, or damaged.
        """
        from ml_engine.live.gallery import gallery_to_continue
        from ml_engine.live.state import StreamState, drop_unknown_windows

        try:
            state = StreamState.from_json(self.backends.blobs.read_small(stream_state_path(job.id)))
        except NotFound:
            return None
        if state is None:
            return None
        # from its blob path, listed in the record or not: a worker may have died after
        # storing the state but before the record listed windows.jsonl
        with contextlib.suppress(NotFound):  # none written yet: the engine starts the file
            self.backends.blobs.download_to_file(output_blob_path(job.id, WINDOWS), output_dir / WINDOWS)
            drop_unknown_windows(output_dir / WINDOWS, state)
        with contextlib.suppress(NotFound):  # no gap yet: the engine starts the file
            self.backends.blobs.download_to_file(output_blob_path(job.id, GAPS), output_dir / GAPS)
        carried_gallery = gallery_to_continue(state)
        if carried_gallery is not None:  # a hand-back's gallery of the window this run goes on with
            with contextlib.suppress(NotFound):  # none after a crash: the window's gallery starts afresh
                (output_dir / carried_gallery).parent.mkdir(parents=True, exist_ok=True)
                self.backends.blobs.download_to_file(output_blob_path(job.id, carried_gallery),
                                                     output_dir / carried_gallery)
        log.info("resuming the stream at window %s", state.next_window)
        return state


def policed(config: StreamConfig, networks: list[str], proxy: EgressProxy) -> StreamConfig:
    """``config`` with the egress policy on its source: checked before every (re)connect, and
    every HTTP(S) request through the checking proxy (core.egress_proxy)."""
    source = dataclasses.replace(config.source, check=functools.partial(check_stream_url, allowed_networks=networks),
                                 http_proxy=proxy.url, egress_refusals=lambda: proxy.refusals)
    return dataclasses.replace(config, source=source)


def stream_config(job: Job, settings: Settings) -> StreamConfig:
    """A stream job's engine configuration: its parameters, with the service's settings for the rest."""
    from ml_engine.live import SourceOptions, StreamConfig

    params, options = job.params, job.stream
    assert options is not None, "a stream job always has its options"
    limits = [d for d in (options.duration_s, settings.max_stream_seconds) if d is not None]
    return StreamConfig(
        detection=detection_config(params, settings),
        min_hits=settings.min_track_hits,
        lines=list(params.lines),
        zones=list(params.zones),
        tracker=params.tracker or settings.tracker,
        window_s=options.window_s,
        segment_retention_s=settings.stream_segment_retention_s,
        duration_s=min(limits) if limits else None,
        status_interval_s=settings.progress_interval_s,
        crf=settings.video_crf,
        preset=settings.video_preset,
        source=SourceOptions(
            read_timeout_s=settings.stream_read_timeout_s,
            backoff_max_s=settings.stream_backoff_max_s,
            max_reconnects=settings.stream_max_reconnects,
            first_connect_attempts=settings.stream_connect_attempts,
        ),
    )


@dataclass
class _Counters:
    """The engine's running counters as last seen, so Prometheus gets the increments."""

    dropped: int = 0
    reconnects: int = 0


class StreamSession:
    """The engine's sink (``ml_engine.live.StreamSink``) for one run of one stream: it asks the
    record when to stop, writes the run's progress to it, and stores the run's files and resume
    states (``StreamStorage``)."""

    def __init__(self, settings: Settings, backends: Backends, job: Job, reporter: JobReporter,
                 clock: Callable[[], float] = time.monotonic, resume: StreamState | None = None,
                 outage_limit_s: float = STORAGE_OUTAGE_LIMIT_S) -> None:
        self.settings = settings
        self.backends = backends
        self.job_id = job.id
        self.reporter = reporter
        self.clock = clock
        self.storage = StreamStorage(backends, job.id, job.outputs, clock, outage_limit_s)
        self.events = EventAggregator(settings.stream_event_cooldown_s, settings.stream_events_per_minute, clock)
        self.send_events_to = str(job.params.callback_url) if job.stream and job.stream.events and \
            job.params.callback_url else None
        self.end_at = job.stream.end_at if job.stream else None
        self.reached_end_at = False  # the run stops because end_at came (not DELETE, not a shutdown)
        self.started = clock()
        # the counters as the resume state left them: Prometheus gets only what this run adds
        self._seen = _Counters(resume.frames_dropped, resume.reconnects) if resume is not None else _Counters()
        self._unsent: list[dict[str, Any]] = []
        self._new_gaps: list[dict[str, Any]] = []
        # set once the run is to stop; set from the start for a stream DELETEd between two runs
        self.stop = threading.Event()
        if job.cancel_requested:
            self.stop.set()
        self._run_thread = threading.get_ident()  # the run's thread: the only one that reads the record
        self._forgiven = False  # this run has been up STREAM_STABLE_AFTER_S: earlier deliveries forgiven
        self._lock = threading.Lock()  # callbacks may come from the engine's threads

    @property
    def outputs(self) -> dict[str, str]:
        """{output name: blob path} of the outputs the record lists."""
        return self.storage.outputs

    def begin(self) -> None:
        """Mark the run started: the attempts rule counts from here."""
        self._write(lifecycle.RunStarted())

    # --- the engine's sink ------------------------------------------------------------------

    def should_hand_back(self) -> bool:
        """Whether this worker is going away: the run stops without ending the stream, which
        resumes on another worker. Asked on the run's thread only (before ``should_stop``)."""
        return self.reporter.should_cancel() and self.reporter.stop_reason is StopReason.SHUTDOWN

    def should_stop(self) -> bool:
        """Whether the run is to stop. On the run's thread the reasons are checked (the record,
        through the reporter); any other thread only reads the flag the run's thread sets."""
        if not self.stop.is_set() and threading.get_ident() == self._run_thread and self._stop_asked():
            self.stop.set()
        return self.stop.is_set()

    def _stop_asked(self) -> bool:
        if self.reporter.should_cancel():
            return True
        self.reached_end_at = self.end_at is not None and utcnow() >= self.end_at
        return self.reached_end_at

    def on_event(self, event: CountEvent) -> None:
        if self.send_events_to is not None:
            with self._lock:
                self.events.add(event)

    def on_files(self, changed: dict[str, Path], removed: list[str]) -> None:
        if not self.lease_lost():
            self.storage.add_files(changed, removed)

    def store_final(self, files: dict[str, Path]) -> None:
        """Store the run's final files; the job completes only with all of them stored.

        Raises:
            StorageUnavailable: some could not be stored (the run is retried, and finalises again).
        """
        self.on_files(self.not_uploaded(files), [])
        if self.storage.files_pending and not self.lease_lost():
            pending = self.storage.files_pending
            raise StorageUnavailable(f"{pending} of the stream's final files could not be stored")

    def not_uploaded(self, files: dict[str, Path]) -> dict[str, Path]:
        """Of the engine's final files, those not stored yet (``StreamStorage.not_uploaded``)."""
        return self.storage.not_uploaded(files)

    def store_state(self, state: StreamState) -> None:
        """Store the engine's resume state (best effort: the newest wins; an older one that
        failed is not needed)."""
        if not self.lease_lost():
            self.storage.add_state(state)

    def on_window(self, window: dict[str, Any], state: StreamState) -> None:
        if self.lease_lost():
            return
        self.store_state(state)
        outputs = self.storage.take_outputs()  # the window's files were just uploaded (on_files comes first)
        if not self._write(lifecycle.WindowClosed(window, outputs)) and outputs is not None:
            self.storage.outputs_not_written()  # written with the next report

    def on_status(self, status: LiveStatus) -> None:
        self._observe(status)
        if self.lease_lost():
            return
        if self.storage.pending:
            self.storage.store_pending()  # what a storage blip left
        with self._lock:
            self._new_gaps.extend(status.gaps)
            new_gaps, self._new_gaps = self._new_gaps, []
        outputs = self.storage.take_outputs()
        forgive = not self._forgiven and self.clock() - self.started >= self.settings.stream_stable_after_s
        # forgive: up long enough, the deliveries so far are no failed attempts
        written = self._write(lifecycle.LiveProgress(status, new_gaps, outputs, forgive))
        if not written:  # best effort: what this report carried goes with the next one
            with self._lock:
                self._new_gaps[:0] = new_gaps
            if outputs is not None:
                self.storage.outputs_not_written()
        if written and forgive:
            self._forgiven = True
            log.info("the stream has been up %.0f s: its earlier deliveries no longer count as failed attempts",
                     self.settings.stream_stable_after_s)
        self.send_events()

    # --- events: aggregated, then written to the outbox with the record ---------------------

    def send_events(self, final: bool = False) -> None:
        if self.send_events_to is None:
            return
        with self._lock:
            self._unsent.extend(self.events.due(final))
            summaries = list(self._unsent)
        if not summaries:
            return
        url = self.send_events_to
        sent = lifecycle.EventsSent(sum(int(summary.get("events", 0)) for summary in summaries))

        def webhook(job: Job) -> WebhookEvent | None:
            if job.live is None or lifecycle.out_of_event_numbers(job.live):
                return None
            sequence = job.live.events_sent
            body = {"type": STREAM_EVENTS, "timestamp": utcnow().isoformat(),
                    "data": {"job_id": job.id, "source": job.source, "summaries": summaries}}
            return WebhookEvent(id=event_id(job.id, sequence), job_id=job.id, sequence=sequence,
                                type=STREAM_EVENTS, url=url, body=json.dumps(body), created_at=utcnow())

        if self._write(sent, webhook):
            with self._lock:
                del self._unsent[:len(summaries)]
            if sent.unsent:
                metrics.STREAM_EVENTS_UNSENT.inc(sent.unsent)
                log.warning("this stream has sent the most event webhooks one job can (%d); %d events were "
                            "not sent (counted in live.events_unsent)", FINAL_SEQUENCE - 1, sent.unsent)

    # --- helpers ----------------------------------------------------------------------------

    def lease_lost(self) -> bool:
        """Another worker may be running the stream now: its files and record are not ours to
        write (the engine still finalises its local files as it stops)."""
        return self.reporter.stop_reason is StopReason.LEASE_LOST

    def _write(self, report: lifecycle.Report,
               event: Callable[[Job], WebhookEvent | None] | None = None) -> bool:
        """Best effort, as progress is: a failed write is retried with the next report."""
        try:
            job = self.backends.jobs.modify(self.job_id, functools.partial(lifecycle.progress, report=report),
                                            event=event)
        except lifecycle.TransitionRefused as refused:  # no longer processing: nothing of this run to record
            job = refused.job
        except CattleCounterError as exc:
            log.warning("could not record the stream's state: %s", exc)
            return False
        if job.cancel_requested:
            self.stop.set()  # DELETE: stop, and complete with the outputs
        return True

    def _observe(self, status: LiveStatus) -> None:
        for latency in status.latencies_s:
            metrics.STREAM_LATENCY.observe(latency)
        metrics.STREAM_FRAMES_DROPPED.inc(max(0, status.frames_dropped - self._seen.dropped))
        metrics.STREAM_RECONNECTS.inc(max(0, status.reconnects - self._seen.reconnects))
        metrics.STREAM_GAPS.inc(len(status.gaps))
        self._seen = _Counters(status.frames_dropped, status.reconnects)
