"""Faults injected into real stores: everything passes through to the real object except one
method, which fails the way an outage or a refused credential does."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


class FailingMethod:
    """``store`` with ``method`` raising ``error`` (the first ``times`` calls, or every call
    when ``times`` is None); every other attribute is the real store's."""

    def __init__(self, store: Any, method: str, error: Exception, times: int | None = None) -> None:
        self._store, self._method, self._error, self._times = store, method, error, times

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method:
            return real

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self._times is None or self._times > 0:
                if self._times is not None:
                    self._times -= 1
                raise self._error
            return real(*args, **kwargs)

        return failing


@contextmanager
def full_disk(where: Path, size_kb: int = 64) -> Iterator[Path]:
    """A real, tiny tmpfs mounted at ``where`` and filled to the last byte: every write there
    fails with ENOSPC, as on a scratch volume that ran out of space. Skips the test where
    mounting is not allowed (not root, or a container without CAP_SYS_ADMIN)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        with open(where / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
