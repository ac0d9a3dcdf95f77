"""``milur-bridge reload``: ask a running bridge to load its mapping file again.

POSTs ``/api/reload`` on the bridge's status server. The bridge parses the whole file first; a bad
mapping is refused with every error listed and the running mapping stays. The same happens on
SIGHUP (``kill -HUP <pid>``); this command is for when the bridge's process is out of reach
(another user, a container) and to see the errors.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

NAME = "reload"
HELP = "make a running bridge reload its mapping (POST /api/reload); lists the errors of a bad one"
PASSWORD_ENV = "MILUR_BRIDGE_PASSWORD"
DESCRIPTION = f"""\
Ask a running bridge to reload its mapping file, through its status server. Prints "reloaded" and
exits 0 when the new mapping was applied; prints every error and exits 1 when it was refused (the
running mapping stays), when the bridge cannot be reached, or when it asks for a login.

With --user the password is taken from ${PASSWORD_ENV}, or asked for on the terminal.
SIGHUP to the bridge's process does the same reload.
"""

EXIT_OK = 0
EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--user``, ``--timeout``."""
    parser.add_argument(
        "--url", default="http://127.0.0.1:8080",
        help="status server of the bridge (default http://127.0.0.1:8080)",
    )
    parser.add_argument("--user", help="status page user (<status username=...>)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")


def _password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    return getpass.getpass(f"password (or set {PASSWORD_ENV}): ")


def _request(args: argparse.Namespace) -> urllib.request.Request:
    url = str(args.url).rstrip("/") + "/api/reload"
    request = urllib.request.Request(url, data=b"", method="POST")
    if args.user:
        token = base64.b64encode(f"{args.user}:{_password()}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    return request


def _document(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def run(args: argparse.Namespace) -> int:
    """0 when the bridge applied the mapping, 1 otherwise (with the reason on stderr)."""
    if not str(args.url).startswith(("http://", "https://")):
        print(f"error: --url must start with http:// or https://, got {args.url!r}", file=sys.stderr)
        return 2
    request = _request(args)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"error: cannot reach the bridge at {args.url}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    doc = _document(body)
    if status == 200 and doc.get("ok"):
        print("reloaded")
        return EXIT_OK
    if status == 401:
        hint = "wrong user or password" if args.user else "the status server wants --user"
        print(f"error: {args.url}: authentication required ({hint})", file=sys.stderr)
        return EXIT_FAILED
    errors = [str(e) for e in doc.get("errors", [])] if doc else []
    if status == 422:
        print("reload refused, the running mapping stays:", file=sys.stderr)
    else:
        print(f"error: {args.url} answered HTTP {status}", file=sys.stderr)
    for line in errors:
        print(f"  {line}", file=sys.stderr)
    return EXIT_FAILED
