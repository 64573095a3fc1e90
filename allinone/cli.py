"""``cattlecounter``: the console script ``pip install`` puts on the PATH.

    cattlecounter run [--host H] [--port P]     the API, the dashboard and a worker in one process
    cattlecounter api [--host H] [--port P]     the API and the dashboard (``uvicorn api.main:app``)
    cattlecounter worker [--burst]              a queue worker (``python -m worker.main``)
    cattlecounter count SOURCE [-o OUTDIR] ...  count a video, images or a stream, no service

Each subcommand is the module that ``make run``, ``make run-api``, ``make run-worker`` and
``python -m ml_engine`` run, imported only when chosen: ``cattlecounter count --help`` loads no
web server, and ``cattlecounter api`` no torch. It lives in ``allinone``, the composition root
that may import every package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

PROG = "cattlecounter"


def _run(argv: list[str]) -> int:
    from allinone.__main__ import main

    return main(argv)


def _api(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} api", description="Serve the API and the dashboard.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run("api.main:app", host=args.host, port=args.port)
    return 0


def _worker(argv: list[str]) -> int:
    from worker.main import main

    return main(argv)


def _count(argv: list[str]) -> int:
    from ml_engine.__main__ import main

    return main(argv, prog=f"{PROG} count")


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "run": (_run, "the API, the dashboard and a worker in one process, on the local backend (make run)"),
    "api": (_api, "the API and the dashboard only (make run-api)"),
    "worker": (_worker, "a queue worker only (make run-worker)"),
    "count": (_count, "count a video, an image, a folder of images or a stream URL, with no service"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Count and track animals (or any objects) in video, images and live streams.",
        epilog="`cattlecounter COMMAND --help` describes each command's options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        # no options of its own: everything after the command is the command's (its own --help too)
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cattlecounter``; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = build_parser().parse_args(arguments[:1]).command  # the first word only: the rest is the command's
    run, _ = COMMANDS[command]
    return run(arguments[1:])


if __name__ == "__main__":
    sys.exit(main())
