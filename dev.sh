#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh demo   set up everything and start the portal with the demo district on http://127.0.0.1:5000
#   ./dev.sh test   set up everything and run the whole test suite
# Both are safe to run again. Other sub-commands: setup (install only), worker, city (the stand-in city system).
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating the virtual environment in $VENV ..."
    "$PY" -m venv "$VENV"
  fi
  local want have
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "Installing dependencies ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$want" > "$VENV/.requirements.sha256"
  fi
  # Compiled message catalogues are build output, not sources.
  "$VENV/bin/pybabel" compile --use-fuzzy -d portal/translations >/dev/null 2>&1 || "$VENV/bin/pybabel" compile -d portal/translations
  # WTForms' own messages ("This field is required.") in Vietnamese: our catalogue, see portal/forms.py.
  "$VENV/bin/pybabel" -q compile -D wtforms -d portal/translations
}

case "${1:-}" in
  setup)
    setup
    ;;
  demo)
    setup
    export FLASK_APP=wsgi.py
    "$VENV/bin/flask" db upgrade
    "$VENV/bin/flask" demo
    # The stand-in city system beside the portal, so that sending records to the city works in the demo.
    "$VENV/bin/python" -m standins.city --port "${CITY_PORT:-5100}" --data instance/city \
      --trust-root instance/pki/demo-root-ca.pem >instance/city.log 2>&1 &
    city_pid=$!
    trap 'kill "$city_pid" 2>/dev/null' EXIT
    echo
    echo "The portal: http://127.0.0.1:5000  (stop with Ctrl+C)"
    echo "The stand-in city system: http://127.0.0.1:${CITY_PORT:-5100}  (log: instance/city.log)"
    "$VENV/bin/flask" run --host 127.0.0.1 --port "${PORT:-5000}" --no-reload
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
    sed -n '2,5p' "$0"
    exit 2
    ;;
esac
