"""Structured logging on the standard library: JSON lines for machines, text for people.

``configure_logging(level, fmt)`` installs one handler on the root logger. Every record
that reaches it gets the fields of the current *log context*: ``job_context(job_id)`` sets
``job_id`` for everything logged inside the ``with`` block, from any logger (ours, uvicorn's,
the Azure SDK's), because the context lives in a ``contextvars.ContextVar``.

Context variables follow asyncio tasks and ``asyncio.to_thread`` automatically, but NOT
plain threads: a thread started with ``threading.Thread(target=f)`` begins with an empty
context. Pipeline stages that run on their own threads must copy the context in, either with
``start_thread_in_context(f)`` or by hand::

    ctx = contextvars.copy_context()
    threading.Thread(target=ctx.run, args=(f,)).start()
    executor.submit(contextvars.copy_context().run, f, arg)

Credentials never reach the output: ``RedactSecretsFilter`` (installed on the handler, so it
sees every record, uvicorn's access log included) blanks API keys, signatures (ours and
Azure SAS ``sig=``), account keys and Authorization/X-API-Key header values.

A JSON line looks like::

    {"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "worker.loop",
     "message": "job completed", "job_id": "0193...", "frames": 795}
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from core.errors import ConfigError

FORMATS = ("auto", "json", "text")

# Chatty libraries (the Azure SDK logs every HTTP request and response at INFO) are held at
# WARNING unless LOG_LEVEL is DEBUG.
QUIET_LOGGERS = {
    "azure.core.pipeline.policies.http_logging_policy": logging.WARNING,
    "azure.identity": logging.WARNING,
    "httpx": logging.WARNING,
    "urllib3": logging.WARNING,
}

# uvicorn installs its own handlers (and stops propagation) before our app is imported;
# configure_logging hands these loggers back to the root so their lines share our format.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

_log_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)


# --- log context ------------------------------------------------------------------------------


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log record emitted inside the block (nested blocks merge)."""
    token = _log_context.set({**_log_context.get(), **fields})
    try:
        yield
    finally:
        _log_context.reset(token)


@contextmanager
def job_context(job_id: str, **fields: Any) -> Iterator[None]:
    """Tag every log line emitted inside the block with ``job_id`` (and any other ``fields``)."""
    with log_context(job_id=job_id, **fields):
        yield


def current_log_context() -> dict[str, Any]:
    """The fields the current context adds to log records."""
    return dict(_log_context.get())


def start_thread_in_context(
    target: Callable[..., Any], *args: Any, name: str | None = None
) -> threading.Thread:
    """Start a daemon thread running ``target(*args)`` inside a copy of the caller's context.

    Use it for pipeline threads so their log lines keep the job's ``job_id``.
    """
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
    thread.start()
    return thread


class LogContextFilter(logging.Filter):
    """Copies the current log context onto each record (without overwriting explicit extras).

    Handler filters run in the thread that logged, so the context read is the emitter's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _log_context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# --- redaction --------------------------------------------------------------------------------

REDACTED = "[REDACTED]"
_SECRET_PATTERNS = (
    # query parameters: ?api_key=..., a signed link's sig=, an Azure SAS's sig=
    (re.compile(r"(?i)([?&;](?:api_key|apikey|sig|signature|access_token|token)=)[^&\s\"'#;,)]+"), rf"\1{REDACTED}"),
    # header values, as "Authorization: Bearer x", "'X-API-Key': 'x'" or x-api-key=x
    (re.compile(r"(?i)\b(authorization|x-api-key)(['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic|sharedkey|signature)\s+)?"
                r"[^\s'\",;&)]+"), rf"\1\2\3{REDACTED}"),
    # connection strings
    (re.compile(r"(?i)\b(accountkey|sharedaccesssignature)=[^;\s'\"]+"), rf"\1={REDACTED}"),
)


def redact(text: str) -> str:
    """``text`` with every credential we know the shape of replaced by [REDACTED]."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Blanks credentials in a record's message, its string extras and its traceback, and cuts
    each to a bounded length (a client's 10 MB id must not become a 10 MB log line).

    The message is rendered and its arguments dropped, because a secret may sit in any of
    them (uvicorn's access log passes the request line, query string and all, as an argument).
    Cutting comes first: the patterns then scan little, and a secret cut short is still a
    match for its pattern.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(cut(record.getMessage(), MAX_MESSAGE_CHARS)), None
        for key, value in record_extras(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(cut(value, MAX_FIELD_CHARS)))
        if record.exc_info:  # another handler may have cached the traceback's text already
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(cut(text, MAX_TRACEBACK_CHARS))
        return True


# --- bounds: every record is written, whatever strings it holds ---------------------------------

MAX_FIELD_CHARS = 1_000  # an extra field (job_id, path, ...)
MAX_MESSAGE_CHARS = 4_000
MAX_TRACEBACK_CHARS = 20_000


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters marked as cut with how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[cut {len(text) - limit} characters]"


def writable(line: str) -> str:
    """``line`` as UTF-8 can carry it: lone surrogates (JSON allows "\\ud800", UTF-8 does not)
    become ``\\ud800`` escapes instead of failing the write."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return line.encode("utf-8", "backslashreplace").decode("utf-8")
    return line


# --- formatters ---------------------------------------------------------------------------------


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard ones (log context and ``extra=``)."""
    return {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRS}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["exception"] = record.exc_text or "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            entry["stack"] = record.stack_info
        return writable(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``12:00:00.123 INFO  worker.loop [job 0193...] job completed frames=795`` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        extras = record_extras(record)
        job_id = extras.pop("job_id", None)
        parts = [self.formatTime(record, "%H:%M:%S") + f".{int(record.msecs):03d}", f"{record.levelname:<7}"]
        parts.append(record.name)
        if job_id is not None:
            parts.append(f"[job {job_id}]")
        parts.append(record.getMessage())
        parts.extend(f"{key}={value}" for key, value in extras.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return writable(line)


# --- set-up ------------------------------------------------------------------------------------


def parse_level(level: str | int) -> int:
    """``"info"``/``"INFO"``/``20`` -> 20; raises ConfigError for anything else."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ConfigError(f"LOG_LEVEL: unknown level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def choose_formatter(fmt: str, stream: TextIO) -> logging.Formatter:
    """JSON for ``json``, text for ``text``; ``auto`` is text on a terminal, JSON otherwise."""
    fmt = str(getattr(fmt, "value", fmt)).lower()  # accepts core.config.LogFormat too
    if fmt not in FORMATS:
        raise ConfigError(f"LOG_FORMAT: unknown format {fmt!r}; use auto, json or text")
    if fmt == "auto":
        fmt = "text" if _is_terminal(stream) else "json"
    return JsonFormatter() if fmt == "json" else TextFormatter()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def configure_logging(
    level: str | int = "INFO", fmt: str = "auto", stream: TextIO | None = None
) -> logging.Handler:
    """Send all logging to ``stream`` (default stdout) in the chosen format, with log context.

    Safe to call again (e.g. after uvicorn set up its own logging): the handler installed
    last time is replaced, and handlers others added to the root logger (pytest's capture,
    for one) are left alone. Returns the installed handler.
    Raises ConfigError for an unknown level or format.
    """
    numeric_level = parse_level(level)
    target = stream if stream is not None else sys.stdout
    handler = logging.StreamHandler(target)
    handler.setFormatter(choose_formatter(fmt, target))
    handler.addFilter(LogContextFilter())
    handler.addFilter(RedactSecretsFilter())
    handler._cattlecounter = True  # type: ignore[attr-defined]  # marks the handler as ours

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_cattlecounter", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _route_server_loggers_to_root()
    for name, quiet_level in QUIET_LOGGERS.items():
        # LOG_LEVEL=DEBUG un-quiets them: that is when their request logs are wanted.
        debugging = numeric_level <= logging.DEBUG
        logging.getLogger(name).setLevel(numeric_level if debugging else max(quiet_level, numeric_level))
    return handler


def _route_server_loggers_to_root() -> None:
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
