"""`visiting policy check DIR`: validate a policy directory and print every problem."""

from __future__ import annotations

from hub.cli.base import load_policy


def add_parser(sub) -> None:
    policy = sub.add_parser("policy", help="platform files").add_subparsers(
        dest="action", required=True
    )
    p = policy.add_parser("check", help="validate a policy directory; print every problem")
    p.add_argument("dir", help="folder with platform.yaml, approvals/ and users.yaml")
    p.set_defaults(func=cmd_policy_check)


def cmd_policy_check(args) -> int:
    bundle = load_policy(args.dir)
    for w in bundle.warnings:
        print(f"warning: {w}")
    p = bundle.platform
    print(
        f"{args.dir}: valid: {len(p.sites)} sites, {len(p.datasets)} datasets, "
        f"{len(bundle.approvals)} approvals, {len(bundle.accounts)} accounts"
    )
    return 0
