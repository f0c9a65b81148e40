"""``serve``: parse and start the local web page. Thin: the server is ``neuroear.web.server``."""

from __future__ import annotations

import argparse
from typing import Any

from neuroear.cli.common import add_model_options, check_threads


def register(subparsers: Any) -> None:
    """Add ``serve`` to an argparse subparsers object (``set_defaults(func=…)``)."""
    from neuroear.web.server import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT  # no fastapi: only constants

    p = subparsers.add_parser(
        "serve",
        help="local web page: drop files to see instruments over time, or listen through the browser's microphone",
        description=(
            "Start a local web server (needs the 'web' extra) and print its address. The page analyses dropped "
            "files exactly as `neuroear analyze` and streams the browser's microphone through the loop of "
            "`neuroear listen`. It listens on this computer only unless --host says otherwise."
        ),
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 opens it to the network: there is no login)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any free port)")
    add_model_options(p)
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB", help=f"largest file accepted, in MB (default {DEFAULT_MAX_UPLOAD_MB:g})")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``neuroear serve``: runs until Ctrl-C; returns 0."""
    check_threads(args.threads)
    from neuroear.web.server import serve

    serve(host=args.host, port=args.port, model=args.model, provider=args.provider, threads=args.threads,
          max_upload_mb=args.max_upload_mb)
    return 0
