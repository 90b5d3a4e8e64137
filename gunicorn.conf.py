"""gunicorn's settings for the portal: `gunicorn -c gunicorn.conf.py` (the README's Production section).

Threaded workers (gthread): a worker's main thread reports to the arbiter while its threads serve, so a
long download (a ministry bundle, an export streamed from the file store in 1 MB chunks to a slow client)
is never cut by `timeout`; `timeout` only restarts a worker that stopped answering altogether.
`kill -HUP` (systemctl reload) starts new workers with the new code and lets the old ones finish what they
serve within `graceful_timeout`; SIGTERM (systemctl stop) does the same before exiting.
Every value can be moved by the environment variable named beside it.
"""

import os

wsgi_app = "wsgi:app"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", str(2 * (os.cpu_count() or 1))))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "300"))
keepalive = 5
# Fresh workers now and then: memory a worker grew for one large request is handed back.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = max_requests // 10
# The portal writes one JSON line per request itself (request id, user, school, status, duration).
accesslog = None
errorlog = "-"
# The reverse proxy in front; the portal's PROXY_HOPS decides which X-Forwarded-* it believes.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Reloads and stops go through signals (systemd's ExecReload sends HUP); no control socket in the home folder.
control_socket_disable = True
