"""`python -m extensions.guard.export` at a site, and in a researcher's server.

At the site (the hub's export service runs these in a short-lived container):

    freeze --home DIR --export-dir DIR --data DIR --request ID --rules JSON [--datasets A,B] PATH...
        freeze the files, run the checks, print the Manifest (JSON) on stdout. Exit 0
        whenever it ran, with failed checks or a refused request (Manifest.error) too;
        2 for bad flags, 1 when it could not run (unreadable rules, no such folder).
        --rules is the ExportRules JSON, or @FILE to read it from a file.
    read --export-dir DIR --request ID --name NAME
        one frozen file's bytes on stdout, after its hash is checked against the manifest.

In a researcher's server:

    request --purpose TEXT [--site SITE] PATH...    ask for an export; prints the answer
    requests [--site SITE]                          your requests
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from ...contracts.export import ExportRules

EXIT_COULD_NOT_RUN = 1


def _fail(message: str) -> int:
    print(f"visiting-export: {message}", file=sys.stderr)
    return EXIT_COULD_NOT_RUN


def load_rules(text: str) -> ExportRules:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    return ExportRules.from_json(text)


def cmd_freeze(args) -> int:
    from .checks import FileChecks
    from .freeze import freeze, valid_request_id

    try:
        rules = load_rules(args.rules)
    except (OSError, ValueError, TypeError) as e:
        return _fail(f"cannot read the rules: {e}")
    for flag, folder in (("--home", args.home), ("--export-dir", args.export_dir)):
        if not os.path.isdir(folder):
            return _fail(f"{flag} {folder} is not a folder")
    try:
        valid_request_id(args.request)
    except ValueError as e:
        return _fail(str(e))
    datasets = [d for d in (args.datasets or "").split(",") if d] or None
    checks = FileChecks.for_site(rules, args.data, datasets)
    manifest = freeze(
        args.home, args.export_dir, args.request, args.paths, rules, checks, checks.media_type
    )
    sys.stdout.write(manifest.to_json() + "\n")
    return 0


def cmd_read(args) -> int:
    import hashlib

    from .freeze import frozen_file

    try:
        path, entry = frozen_file(args.export_dir, args.request, args.name)
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1024 * 1024), b""):
                h.update(chunk)
        if h.hexdigest() != entry.sha256:
            return _fail(f"'{args.name}' no longer matches its hash in the manifest; not sent")
        with open(path, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1024 * 1024)
        sys.stdout.flush()
    except (LookupError, ValueError, OSError) as e:
        return _fail(str(e))
    return 0


def cmd_request(args) -> int:
    from .client import ExportRequestError, request_export

    try:
        answer = request_export(args.paths, args.purpose, args.site)
    except ExportRequestError as e:
        return _fail(str(e))
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0


def cmd_requests(args) -> int:
    from .client import ExportRequestError, export_requests

    try:
        answer = export_requests(args.site)
    except ExportRequestError as e:
        return _fail(str(e))
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m extensions.guard.export", description="the export airlock at a site"
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("freeze", help="freeze a request's files and check them (at the site)")
    f.add_argument("--home", required=True, help="the person's home folder (read-only)")
    f.add_argument("--export-dir", required=True, help="the site's export area")
    f.add_argument("--data", required=True, help="the site's datasets, for the cohort")
    f.add_argument("--datasets", help="the approval's datasets there, comma-separated")
    f.add_argument("--request", required=True, help="the request's id")
    f.add_argument("--rules", required=True, help="ExportRules as JSON, or @FILE")
    f.add_argument("paths", nargs="+", help="files or folders, relative to the home")
    f.set_defaults(run=cmd_freeze)
    r = sub.add_parser("read", help="one frozen file's bytes on stdout (at the site)")
    r.add_argument("--export-dir", required=True)
    r.add_argument("--request", required=True)
    r.add_argument("--name", required=True, help="the file's name in the request")
    r.set_defaults(run=cmd_read)
    q = sub.add_parser("request", help="ask for an export (in your server)")
    q.add_argument("--purpose", required=True, help="what the files are for")
    q.add_argument("--site", help="the site (default: this server's)")
    q.add_argument("paths", nargs="+", help="files or folders in your home")
    q.set_defaults(run=cmd_request)
    ls = sub.add_parser("requests", help="your export requests (in your server)")
    ls.add_argument("--site", help="one site only")
    ls.set_defaults(run=cmd_requests)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="visiting-export: %(message)s"
    )
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
