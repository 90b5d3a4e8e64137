"""Run the stand-in CSC server: `python -m standins.csc --keys FOLDER [--port 5060]`.

FOLDER holds one `<userID>.p12` per signer (the passphrase is --passphrase). The first line printed
is the address it listens on (with --port 0 the system picks a free port), for scripts and tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from werkzeug.serving import make_server

from standins.csc import create_app, load_credentials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.csc", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--keys", type=Path, required=True, help="folder of <userID>.p12 files")
    parser.add_argument("--passphrase", default=os.environ.get("CSC_STANDIN_PASSPHRASE", "hocbaso2025"))
    parser.add_argument("--client-id", default=os.environ.get("CSC_CLIENT_ID", "hocba-portal"))
    parser.add_argument("--client-secret", default=os.environ.get("CSC_CLIENT_SECRET", "standin-secret"))
    parser.add_argument("--approval-seconds", type=int, default=300,
                        help="how long a request waits for the phone before it expires")
    parser.add_argument("--auto-approve", type=float, default=None,
                        help="approve every request by itself after so many seconds (demo)")
    args = parser.parse_args(argv)
    try:
        credentials = load_credentials(args.keys, args.passphrase)
    except ValueError as exc:
        print(f"CSC stand-in: {exc}", file=sys.stderr)
        return 2
    app = create_app(credentials, client_id=args.client_id,
                     client_secret=args.client_secret, approval_seconds=args.approval_seconds)
    if args.auto_approve is not None:
        app.extensions["csc_standin"].behaviour.auto_approve = args.auto_approve
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"CSC stand-in listening on http://{args.host}:{server.port}", flush=True)
    print(f"{len(credentials)} credential(s); phone page: /_standin/phone/<userID>", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
