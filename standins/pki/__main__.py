"""Run the stand-in CA services: `python -m standins.pki --folder instance/pki [--port 5200]`.

The first line printed is the address it listens on (with --port 0 the system picks a free port).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from werkzeug.serving import make_server

from standins.pki import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.pki", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5200)
    parser.add_argument("--folder", type=Path, default=Path("instance/pki"),
                        help="the demo CA's folder (created by the portal's demo command)")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, create_app(args.folder), threaded=True)
    print(f"PKI stand-in (TSA, OCSP, CRL) listening on http://{args.host}:{server.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
