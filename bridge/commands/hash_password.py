"""``milur-bridge hash-password``: make an argon2 hash for an OPC UA (or status page) user.

The password is read from a prompt (asked twice) or, with ``--stdin`` or when stdin is not a
terminal, from the first line of stdin. Only the hash is printed; paste it into the mapping's
``<user name="..." password-hash="..."/>``.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from argon2 import PasswordHasher

NAME = "hash-password"
HELP = "print an argon2 hash of a password for <opcua> users"
DESCRIPTION = __doc__ or HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the command."""
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        print("error: the passwords differ", file=sys.stderr)
        return None
    return first


def run(args: argparse.Namespace) -> int:
    """Read a password and print its argon2 hash; 0 on success, 2 on bad input."""
    try:
        password = _read_password(bool(args.stdin))
    except (EOFError, KeyboardInterrupt):
        print("error: no password given", file=sys.stderr)
        return 2
    if password is None:
        return 2
    if not password:
        print("error: the password is empty", file=sys.stderr)
        return 2
    print(PasswordHasher().hash(password))
    return 0
