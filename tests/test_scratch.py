"""Each process's scratch folder (core.scratch): WORK_DIR checked at start, and what killed
processes left behind swept, with real processes holding (and losing) their folders."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.scratch import Scratch, open_scratch
from tests.fixtures_service import REPO

HOLDER = """
import sys, time
from pathlib import Path
from core.scratch import Scratch
scratch = Scratch.open(Path(sys.argv[1]), "worker", stale_after_s=60)
(scratch.path / "job-0123-abcd").mkdir()
(scratch.path / "job-0123-abcd" / "input").write_bytes(b"partial video")
print(scratch.path, flush=True)
time.sleep(600)
"""


def start_holder(base: Path) -> tuple[subprocess.Popen, Path]:
    """A real process that makes its scratch folder and a job folder in it, then waits."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(base)], cwd=REPO, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    line = process.stdout.readline().strip()
    assert line, "the holder process did not start"
    return process, Path(line)


def kill_holder(process: subprocess.Popen) -> None:
    """SIGKILL, as the OOM killer does: no clean-up runs in the holder. Our end of its stdout
    pipe is closed too (left open, it is an unclosed file: a ResourceWarning)."""
    process.kill()
    process.wait(10)
    process.stdout.close()


def test_a_missing_work_dir_is_created(tmp_path, make_settings):
    work_dir = tmp_path / "not" / "there" / "yet"
    scratch = open_scratch(make_settings("local", work_dir=work_dir), "worker")
    try:
        assert scratch.path.parent == work_dir / "cattlecounter-worker" and scratch.path.is_dir()
    finally:
        scratch.close()
    assert not scratch.path.exists()  # a clean stop leaves nothing


@pytest.mark.parametrize("kind", ["worker", "api"])
def test_a_work_dir_that_is_a_file_is_a_config_error_naming_it(tmp_path, make_settings, kind):
    work_dir = tmp_path / "scratch"
    work_dir.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"WORK_DIR: the scratch folder .*scratch cannot be used") as error:
        open_scratch(make_settings("local", work_dir=work_dir), kind)
    assert "writable directory" in str(error.value)


def test_the_folders_of_killed_processes_are_swept_and_live_ones_kept(tmp_path):
    killed, killed_dir = start_holder(tmp_path)
    alive, alive_dir = start_holder(tmp_path)
    try:
        kill_holder(killed)
        assert (killed_dir / "job-0123-abcd" / "input").exists()

        scratch = Scratch.open(tmp_path, "worker", stale_after_s=60)
        try:
            assert not killed_dir.exists()
            assert (alive_dir / "job-0123-abcd" / "input").read_bytes() == b"partial video"
        finally:
            scratch.close()
    finally:
        kill_holder(alive)


def test_a_folder_without_an_owner_is_swept_only_once_older_than_the_lease(tmp_path):
    root = tmp_path / "cattlecounter-worker"
    root.mkdir()
    starting, crashed = root / "p1-starting", root / "p2-crashed"  # mkdir done, lock not yet taken
    for folder in (starting, crashed):
        (folder / "job-1-x").mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    os.utime(crashed, (an_hour_ago, an_hour_ago))
    scratch = Scratch.open(tmp_path, "worker", stale_after_s=60)
    scratch.close()
    assert starting.exists() and not crashed.exists()


def test_a_sweep_touches_nothing_outside_its_own_kinds_folder(tmp_path):
    other_program = tmp_path / "job-999-their-file"  # WORK_DIR may be shared with other programs
    other_program.mkdir()
    killed_worker, worker_dir = start_holder(tmp_path)
    kill_holder(killed_worker)
    notes = tmp_path / "cattlecounter-worker" / "notes.txt"  # not a process folder
    notes.write_text("someone's notes")

    Scratch.open(tmp_path, "api", stale_after_s=60).close()  # an API sweeps the API's folder only
    assert other_program.exists() and worker_dir.exists() and notes.exists()
    Scratch.open(tmp_path, "worker", stale_after_s=60).close()
    assert other_program.exists() and not worker_dir.exists() and notes.exists()
