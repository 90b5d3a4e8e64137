"""Security headers on every response: what the browser may run, who may frame us, what it may guess.

The Content-Security-Policy allows scripts from our own origin only: no inline script, no `on...=`
attribute, no eval (the pages' JavaScript lives in static/js; the rating grid reads its settings from a
`<script type="application/json">` block, which is data, never run). Styles keep 'unsafe-inline': the
pages carry `style` attributes (widths of bars and charts computed on the server) and the record and
print pages carry `<style>` blocks shared with the PDF renderer; style attributes cannot take a nonce,
and injected CSS cannot run code. No page may be framed by another origin (`frame-ancestors 'none'`,
and X-Frame-Options for older browsers), so a signing page cannot be overlaid on a stranger's site.
HSTS is sent when the session cookie is Secure, i.e. when the portal is served over HTTPS.
"""

from __future__ import annotations

from flask import Flask, Response, current_app

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HSTS = "max-age=31536000; includeSubDomains"


def add_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")  # codes in our URLs never leave for another site
    if response.mimetype == "text/html":
        # Not on PDFs and downloads: a browser's built-in PDF viewer may not run under a page's policy.
        headers.setdefault("Content-Security-Policy", CSP)
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_headers)
