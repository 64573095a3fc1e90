"""core.logging: JSON and text log lines with job context, credentials redacted, and the
settings that choose level and format."""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from _pytest.logging import LogCaptureHandler

from core.config import load_settings
from core.errors import ConfigError, CorruptVideo, StorageUnavailable
from core.logging import (
    QUIET_LOGGERS,
    SERVER_LOGGERS,
    configure_logging,
    current_log_context,
    job_context,
    log_context,
    start_thread_in_context,
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put the root logger back afterwards."""
    root = logging.getLogger()
    touched = [logging.getLogger(name) for name in (*QUIET_LOGGERS, *SERVER_LOGGERS)]
    saved = [(logger, logger.level, logger.propagate, list(logger.handlers)) for logger in touched]
    root_level = root.level
    yield
    for handler in [h for h in root.handlers if getattr(h, "_cattlecounter", False)]:
        root.removeHandler(handler)
    root.setLevel(root_level)
    for logger, level, propagate, handlers in saved:
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_job_id_inside_job_context_only() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("worker.test")
    log.info("before")
    with job_context("job-123"):
        log.info("inside %s", "job", extra={"frames": 795})
        logging.getLogger("some.library").warning("from another logger")
    log.info("after")

    before, inside, library, after = json_lines(out)
    assert set(before) == {"ts", "level", "logger", "message"}
    assert inside["job_id"] == "job-123" and inside["frames"] == 795 and inside["message"] == "inside job"
    assert inside["level"] == "INFO" and inside["logger"] == "worker.test"
    assert str(inside["ts"]).endswith("Z")
    assert library["job_id"] == "job-123" and library["level"] == "WARNING"
    assert "job_id" not in after and "job_id" not in before


@pytest.mark.usefixtures("restore_logging")
def test_pipeline_threads_keep_job_id_only_when_context_is_copied() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("pipeline")
    with job_context("job-7"):
        start_thread_in_context(log.info, "decoder thread").join(5)
        context = contextvars.copy_context()
        manual = threading.Thread(target=context.run, args=(log.info, "manual copy"))
        manual.start()
        manual.join(5)
        plain = threading.Thread(target=log.info, args=("plain thread",))
        plain.start()
        plain.join(5)
    by_message = {line["message"]: line for line in json_lines(out)}
    assert by_message["decoder thread"]["job_id"] == "job-7"
    assert by_message["manual copy"]["job_id"] == "job-7"
    assert "job_id" not in by_message["plain thread"]  # why pipeline threads must copy the context


@pytest.mark.usefixtures("restore_logging")
def test_nested_context_exceptions_and_explicit_extras() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "json", stream=out)
    log = logging.getLogger("worker")
    with job_context("job-1", attempt=2), log_context(stage="decode"):
        assert current_log_context() == {"job_id": "job-1", "attempt": 2, "stage": "decode"}
        log.debug("explicit wins", extra={"stage": "encode"})
        try:
            raise CorruptVideo("bad frame")
        except CorruptVideo:
            log.exception("failed")
    assert current_log_context() == {}
    explicit, failed = json_lines(out)
    assert explicit["stage"] == "encode" and explicit["attempt"] == 2
    assert failed["level"] == "ERROR" and failed["exc_type"] == "CorruptVideo"
    assert "bad frame" in str(failed["exception"]) and "Traceback" in str(failed["exception"])


@pytest.mark.usefixtures("restore_logging")
def test_text_format_is_one_readable_line() -> None:
    out = io.StringIO()
    configure_logging("info", "text", stream=out)
    with job_context("job-9"):
        logging.getLogger("worker.loop").info("job completed", extra={"frames": 10})
    line = out.getvalue().strip()
    assert "INFO" in line and "worker.loop" in line and "[job job-9]" in line
    assert line.endswith("job completed frames=10")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def utf8_stream() -> io.TextIOWrapper:
    """A stream like stdout: UTF-8, strict (a StringIO takes any string, so it hides the problem)."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)


def written_lines(stream: io.TextIOWrapper) -> list[str]:
    return stream.buffer.getvalue().decode("utf-8").splitlines()  # type: ignore[attr-defined]


@contextlib.contextmanager
def without_pytest_log_capture() -> Iterator[None]:
    """pytest keeps each record's text for the test's report, which pytest-xdist sends between
    processes as strict UTF-8: a record holding a lone surrogate there breaks the whole run (an
    INTERNALERROR), not this test. pytest attaches its handlers per phase, so this is entered in
    the test's body; our handler alone sees the records inside."""
    root = logging.getLogger()
    capturing = [handler for handler in root.handlers if isinstance(handler, LogCaptureHandler)]
    for handler in capturing:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in capturing:
            root.addHandler(handler)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_lone_surrogate_anywhere_in_a_record_is_written_escaped(fmt: str, capsys) -> None:
    out = utf8_stream()
    configure_logging("INFO", fmt, stream=out)
    with without_pytest_log_capture(), job_context("\ud800"):
        logging.getLogger("worker.runner").error("job %s failed", "\udfff", extra={"path": "a\ud800b"})
    lines = written_lines(out)
    assert len(lines) == 1, capsys.readouterr().err
    assert "\\ud800" in lines[0] and "\\udfff" in lines[0] and "a\\ud800b" in lines[0]
    assert "Logging error" not in capsys.readouterr().err
    if fmt == "json":  # a JSON escape: the line reads back as the very string logged
        assert json.loads(lines[0])["job_id"] == "\ud800"


@pytest.mark.usefixtures("restore_logging")
def test_long_fields_and_messages_are_cut_and_marked() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    huge = "a" * 10_000_000
    with job_context(huge):
        logging.getLogger("worker.runner").warning("message %s", huge)
    [line] = json_lines(out)
    assert len(out.getvalue()) < 10_000
    assert line["job_id"] == "a" * 1_000 + f"...[cut {10_000_000 - 1_000} characters]"
    assert str(line["message"]).startswith("message aaa") and str(line["message"]).endswith("characters]")


class _FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.usefixtures("restore_logging")
def test_auto_format_is_json_for_pipes_and_text_for_terminals() -> None:
    piped = io.StringIO()
    configure_logging("INFO", "auto", stream=piped)
    logging.getLogger("x").info("hello")
    assert json_lines(piped)[0]["message"] == "hello"

    terminal = _FakeTty()
    configure_logging("INFO", "auto", stream=terminal)
    logging.getLogger("x").info("hello")
    assert terminal.getvalue().rstrip().endswith("x hello")


@pytest.mark.usefixtures("restore_logging")
def test_reconfiguring_replaces_our_handler_and_levels_filter() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", stream=first)
    configure_logging("WARNING", "json", stream=second)
    logging.getLogger("x").info("dropped")
    logging.getLogger("x").warning("kept")
    assert first.getvalue() == ""
    assert [line["message"] for line in json_lines(second)] == ["kept"]


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_loggers_are_routed_through_our_handler() -> None:
    uvicorn_access = logging.getLogger("uvicorn.access")
    stray = logging.StreamHandler(io.StringIO())
    uvicorn_access.addHandler(stray)
    uvicorn_access.propagate = False
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    uvicorn_access.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", "/health", "1.1", 200)
    assert json_lines(out)[0]["logger"] == "uvicorn.access"
    assert stray not in uvicorn_access.handlers


SECRETS = ("alice-key-0123456789", "SIGsigSIG_-42", "c2FzLXNpZw%3D%3D", "Eby8vdM02xNOcqF==", "eyJhbGciOiJIUzI1NiJ9")


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_credentials_are_redacted_from_every_part_of_a_record(fmt: str) -> None:
    out = io.StringIO()
    configure_logging("INFO", fmt, stream=out)
    logging.getLogger("uvicorn.access").info(  # uvicorn passes the request line as arguments
        '%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", f"/jobs/a/video?api_key={SECRETS[0]}&download=true", "1.1", 200)
    log = logging.getLogger("core.backends.azure")
    log.warning("redirect to https://acct.blob.core.windows.net/c/x?sv=2024&sp=r&sig=%s", SECRETS[2],
                extra={"url": f"/jobs/a/result?exp=1&sig={SECRETS[1]}"})
    log.info("request headers: %s", {"X-API-Key": SECRETS[0], "Authorization": f"Bearer {SECRETS[4]}"})
    try:
        raise StorageUnavailable(f"DefaultEndpointsProtocol=http;AccountName=dev;AccountKey={SECRETS[3]};")
    except StorageUnavailable:
        log.exception("storage failed")

    text = out.getvalue()
    for secret in SECRETS:
        assert secret not in text
    assert "api_key=[REDACTED]&download=true" in text and "sig=[REDACTED]" in text
    assert "AccountKey=[REDACTED]" in text and "Traceback" in text


@pytest.mark.usefixtures("restore_logging")
def test_azure_http_logging_is_quiet_unless_debugging() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL: ...")
    assert out.getvalue() == ""
    configure_logging("DEBUG", "json", stream=out)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL: ...")
    assert json_lines(out)[0]["message"] == "Request URL: ..."


@pytest.mark.usefixtures("restore_logging")
def test_accepts_the_settings_model_values() -> None:
    settings = load_settings({"LOG_LEVEL": "warning", "LOG_FORMAT": "json"}, env_file=None)
    out = io.StringIO()
    configure_logging(settings.log_level, settings.log_format, stream=out)
    logging.getLogger("x").warning("from settings")
    assert json_lines(out)[0]["message"] == "from settings"


@pytest.mark.parametrize(
    ("level", "fmt", "variable"), [("LOUD", "json", "LOG_LEVEL"), ("INFO", "xml", "LOG_FORMAT")]
)
def test_bad_level_or_format_is_a_config_error(level: str, fmt: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        configure_logging(level, fmt, stream=io.StringIO())
