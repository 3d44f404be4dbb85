"""authsvc users list | show | ban | unban | delete | revoke | grant-admin | revoke-admin

The admin API's operations for an operator at a shell, on the database the environment names
(the embedded one by default). Every change is recorded in the audit log with the actor `cli`.
USER is an email address or a user id. Exit status: 0 done, 1 no such user, 2 could not run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from authsvc.config import Settings
from authsvc.errors import AuthError, NotFound
from authsvc.services import admin, audit
from authsvc.stores import ADMIN_ROLE, Account, Stores

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> int:
    """Seconds in "3600", "90s", "30m", "12h", "7d" or "2w"."""
    match = _DURATION.match(text.lower())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use seconds, or a number with s, m, h, d or w (7d)"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def _line(account: Account) -> str:
    user = admin.account_dict(account)
    marks = [
        *(f"[{role}]" for role in user["roles"]),
        f"[banned until {user['banned_until']}]" if user["banned"] else "",
        "[pending]" if user["signup_state"] != "complete" else "",
        "[no profile]" if not user["has_profile"] else "",
        "[anonymous]" if user["is_anonymous"] else "",
    ]
    return "  ".join([user["id"], user["email"] or "-", *(m for m in marks if m)])


def _list(args: argparse.Namespace, stores: Stores) -> int:
    accounts, following = admin.list_accounts(stores, args.search, args.cursor, args.limit)
    if args.json:
        users = [admin.account_dict(a) for a in accounts]
        print(json.dumps({"users": users, "next_cursor": following}))
        return 0
    for account in accounts:
        print(_line(account))
    if not accounts:
        print("no users" + (f" matching {args.search!r}" if args.search else ""))
    if following:
        print(f"more: authsvc users list --cursor {following}")
    return 0


def _show(args: argparse.Namespace, stores: Stores) -> int:
    detail = admin.detail_dict(admin.find(stores, args.user))
    if args.json:
        print(json.dumps(detail))
        return 0
    for part in ("identity", "profile"):
        print(f"{part}:" + ("" if detail[part] else " (none)"))
        for key, value in (detail[part] or {}).items():
            print(f"  {key}: {value}")
    print(f"consistent: {'yes' if detail['consistent'] else 'no'}")
    return 0


def _ban(args: argparse.Namespace, stores: Stores) -> int:
    account = admin.ban(stores, audit.CLI, admin.find(stores, args.user).id, args.duration)
    print(f"banned: {_line(account)}; every session ended")
    return 0


def _unban(args: argparse.Namespace, stores: Stores) -> int:
    account = admin.unban(stores, audit.CLI, admin.find(stores, args.user).id)
    print(f"unbanned: {_line(account)}")
    return 0


def _delete(args: argparse.Namespace, stores: Stores) -> int:
    account = admin.find(stores, args.user)
    if not args.yes:
        print(f"would delete {account.id}; add --yes to delete it", file=sys.stderr)
        return 2
    whole = admin.delete(stores, audit.CLI, account.id)
    print(
        f"deleted {account.id}"
        + ("" if whole else "; its profile remains until `authsvc reconcile --repair`")
    )
    return 0


def _revoke(args: argparse.Namespace, stores: Stores) -> int:
    revoked = admin.revoke_sessions(stores, audit.CLI, admin.find(stores, args.user).id)
    print(f"ended {revoked} session(s)")
    return 0


def _role(held: bool) -> Callable[[argparse.Namespace, Stores], int]:
    def change(args: argparse.Namespace, stores: Stores) -> int:
        account = admin.set_role(
            stores, audit.CLI, admin.find(stores, args.user).id, ADMIN_ROLE, held
        )
        print(f"{'granted' if held else 'revoked'} {ADMIN_ROLE}: {_line(account)}")
        return 0

    return change


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """Run one `authsvc users` action on the configured (or embedded) database."""
    from authsvc import cli

    try:
        with cli._database(settings) as ready, cli._stores(ready) as stores:
            return args.users_action(args, stores)
    except NotFound as exc:
        return cli._fail(args, exc.message, status=1)
    except AuthError as exc:
        return cli._fail(args, cli._explain(exc, settings), details=exc.details)


def register(sub: Any) -> None:
    """Add `authsvc users ...` to the command line's subcommands."""
    users = sub.add_parser(
        "users",
        help="list, show, ban, unban, delete users; end their sessions; grant admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    users.set_defaults(func=cmd_users)
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def action(name: str, run: Callable, help_text: str, user: bool = True) -> Any:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        if user:
            parser.add_argument("user", metavar="USER", help="email address or user id")
        parser.set_defaults(users_action=run)
        return parser

    listing = action("list", _list, "users newest first, optionally by email", user=False)
    listing.add_argument("--search", "-q", help="part of the email address, any case")
    listing.add_argument("--limit", type=_page_size, default=50, help="users per page (1-100)")
    listing.add_argument("--cursor", help="the `more:` cursor of the previous page")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    action("show", _show, "both rows of one user and whether they agree").add_argument(
        "--json", action="store_true", help="print one JSON object"
    )
    action("ban", _ban, "ban for a duration; every session ends at once").add_argument(
        "--duration", type=duration, required=True, help="seconds, or 30m, 12h, 7d, 2w"
    )
    action("unban", _unban, "lift a ban")
    action("delete", _delete, "close the account: sessions, then both rows").add_argument(
        "--yes", action="store_true", help="really delete"
    )
    action("revoke", _revoke, "end every session of the user")
    action("grant-admin", _role(True), "give the user the admin role (the admin API)")
    action("revoke-admin", _role(False), "take the admin role back")


def _page_size(text: str) -> int:
    """1 to 100, as the admin API takes it; anything else is refused, not quietly clamped."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 100")
    return value
