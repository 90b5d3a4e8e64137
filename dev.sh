#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh demo   set up everything and start the portal with the demo district on http://127.0.0.1:5000
#   ./dev.sh test   set up everything and run the whole test suite
# Both are safe to run again. Other sub-commands: setup (install only), lock (re-resolve requirements.in
# into the hashed lock requirements.txt), worker, city (the stand-in city system).
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

# The lock must have been made from requirements.in as it is now (its sha256 is written into the lock).
check_lock() {
  local want have
  want=$(sha256sum requirements.in | cut -d' ' -f1)
  have=$(sed -n 's/^# requirements.in sha256: \([0-9a-f]*\).*/\1/p' requirements.txt)
  if [ "$want" != "$have" ]; then
    echo "requirements.txt (the lock) was not made from requirements.in as it is now: run ./dev.sh lock" >&2
    exit 1
  fi
}

setup() {
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "Python 3.11 or newer is needed ($PY is $("$PY" --version 2>&1))" >&2; exit 1; }
  check_lock
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating the virtual environment in $VENV ..."
    "$PY" -m venv "$VENV"
  fi
  local want have
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "Installing the locked dependencies (hash-checked) ..."
    # --no-deps: every package, transitive ones included, must be in the lock with its hash.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
      -r requirements.txt
    # What an earlier lock installed and this one no longer names is removed: the venv is the lock.
    "$VENV/bin/python" - <<'PYEOF'
import re, subprocess, sys
from importlib import metadata
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
locked = {norm(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", open("requirements.txt").read(), re.M)}
extra = sorted({d.metadata["Name"] for d in metadata.distributions() if norm(d.metadata["Name"]) not in locked})
if extra:
    print("Removing what the lock no longer names:", ", ".join(extra))
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", *extra], check=True)
PYEOF
    "$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null
    echo "$want" > "$VENV/.requirements.sha256"
  fi
  # Compiled message catalogues are build output, not sources.
  "$VENV/bin/pybabel" compile --use-fuzzy -d portal/translations >/dev/null 2>&1 || "$VENV/bin/pybabel" compile -d portal/translations
  # WTForms' own messages ("This field is required.") in Vietnamese: our catalogue, see portal/forms.py.
  "$VENV/bin/pybabel" -q compile -D wtforms -d portal/translations
}

# Re-resolve requirements.in into requirements.txt with uv (pinned in the lock itself). Existing pins are
# kept unless asked: `./dev.sh lock --upgrade` or `./dev.sh lock --upgrade-package NAME`.
lock() {
  if [ ! -x "$VENV/bin/uv" ]; then
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --require-hashes --no-deps \
      -r <(grep -A40 '^uv==' requirements.txt | sed '/^[a-z]/{/^uv==/!Q}')
  fi
  "$VENV/bin/uv" pip compile requirements.in --generate-hashes --universal --python-version 3.11 --quiet \
    --custom-compile-command "./dev.sh lock" -o requirements.txt "$@"
  local sha
  sha=$(sha256sum requirements.in | cut -d' ' -f1)
  sed -i "/^# requirements.in sha256: /d" requirements.txt
  sed -i "2a # requirements.in sha256: $sha (\`./dev.sh setup\` refuses a lock made from another input)" requirements.txt
  echo "requirements.txt locked from requirements.in; now run ./dev.sh test"
}

# Every child of the demo (portal, stand-ins) ends with it, by Ctrl+C or by a signal to this script.
demo_children=()
stop_demo() {
  trap - EXIT INT TERM
  if [ "${#demo_children[@]}" -gt 0 ]; then
    kill "${demo_children[@]}" 2>/dev/null || true
    wait "${demo_children[@]}" 2>/dev/null || true
  fi
}

case "${1:-}" in
  setup)
    setup
    ;;
  lock)
    shift
    lock "$@"
    ;;
  demo)
    setup
    port=${PORT:-5000}
    city_port=${CITY_PORT:-5100}
    pki_port=${PKI_PORT:-5200}
    # The addresses printed in every QR code and link, and the city the portal sends to, follow the ports.
    export PUBLIC_URL=${PUBLIC_URL:-http://127.0.0.1:$port}
    export CITY_URL=${CITY_URL:-http://127.0.0.1:$city_port}
    # The demo CA's timestamp authority, OCSP responder and CRLs (standins/pki): the demo records are
    # issued at PAdES B-LTA through it; the demo CA names it in every certificate it issues.
    export DEMO_PKI_URL=${DEMO_PKI_URL:-http://127.0.0.1:$pki_port}
    export TIMESTAMP_URL=${TIMESTAMP_URL:-$DEMO_PKI_URL/tsa}
    export FLASK_APP=wsgi.py
    trap stop_demo EXIT
    trap 'stop_demo; exit 143' TERM
    trap 'stop_demo; exit 130' INT
    mkdir -p instance
    # Before the demo data: issuing the demo records needs it. It reads the CA the demo command creates.
    "$VENV/bin/python" -m standins.pki --port "$pki_port" --folder instance/pki >instance/pki.log 2>&1 &
    demo_children+=("$!")
    "$VENV/bin/flask" db upgrade
    "$VENV/bin/flask" demo
    # The stand-in city system beside the portal, so that sending records to the city works in the demo.
    "$VENV/bin/python" -m standins.city --port "$city_port" --data instance/city \
      --trust-root instance/pki/demo-root-ca.pem >instance/city.log 2>&1 &
    demo_children+=("$!")
    # The demo's issued records wait for the city: once it listens, send them (what the schedule does).
    "$VENV/bin/python" -c 'import socket, sys, time
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("the stand-in city system did not start: see instance/city.log")' "$city_port"
    "$VENV/bin/flask" interop upload || echo "(sending to the stand-in city failed: Liên thông can send again)"
    echo
    echo "The portal: $PUBLIC_URL  (stop with Ctrl+C, or kill $$)"
    echo "The stand-in city system: $CITY_URL  (log: instance/city.log)"
    echo "The demo CA's timestamp/OCSP/CRL stand-in: $DEMO_PKI_URL  (log: instance/pki.log)"
    # In the background and waited for, so that a signal to this script reaches the trap at once.
    "$VENV/bin/flask" run --host 127.0.0.1 --port "$port" --no-reload &
    demo_children+=("$!")
    wait -n "${demo_children[@]}"
    ;;
  test)
    setup
    shift
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  worker)
    setup
    exec "$VENV/bin/python" worker.py
    ;;
  city)
    # The stand-in city system (docs/city-contract.md) on its own port; it keeps what it receives in
    # instance/city. Demo records are signed by the demo CA: trust its root when the demo made one.
    setup
    shift
    roots=()
    if [ -f instance/pki/demo-root-ca.pem ]; then roots=(--trust-root instance/pki/demo-root-ca.pem); fi
    exec "$VENV/bin/python" -m standins.city --port "${CITY_PORT:-5100}" --data "${CITY_DATA:-instance/city}" "${roots[@]}" "$@"
    ;;
  *)
    sed -n '2,6p' "$0"
    exit 2
    ;;
esac
