"""`python -m standins.city --port 5100 --data <folder>`: run the stand-in city server."""

from __future__ import annotations

import argparse
import os
import sys

from standins.city import create_app, validation

DEMO_KEY = "demo-district-key-nhabe"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The stand-in city system, contract v1 (docs/city-contract.md).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5100)
    parser.add_argument("--data", default="instance/city", help="folder where what it receives is kept")
    parser.add_argument("--api-key", action="append", default=None,
                        help="an accepted district API key (repeatable); default: $CITY_API_KEY or the demo key")
    parser.add_argument("--trust-root", action="append", default=[],
                        help="a trusted root certificate (PEM or DER file), repeatable")
    parser.add_argument("--skip", action="append", default=[], choices=validation.CHECKS,
                        help="a check not to make (repeatable), e.g. --skip signatures")
    args = parser.parse_args(argv)
    keys = args.api_key or [os.environ.get("CITY_API_KEY") or DEMO_KEY]
    roots = validation.load_trust_roots(args.trust_root)
    checks = [c for c in validation.CHECKS if c not in args.skip]
    if "signatures" in checks and not roots:
        print("No --trust-root given: every signed record will be refused as SIGNATURE_UNTRUSTED "
              "(give the demo CA's root, instance/pki/demo-root-ca.pem, or --skip signatures).", file=sys.stderr)
    app = create_app(args.data, api_keys={key: "district" for key in keys}, trust_roots=roots, checks=checks)
    print(f"Stand-in city system on http://{args.host}:{args.port}  (data in {args.data}; checks: {', '.join(checks)})")
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
