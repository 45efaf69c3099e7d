#!/usr/bin/env bash
# Install what this project needs on a fresh machine, idempotently:
# Debian packages, the Python virtual environment, the Node packages.
# Each step is skipped when what it would install is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# reference tools for genomic data (the tests compare against them)
APT_PACKAGES=(bcftools tabix samtools plink2 plink1.9)
# PostgreSQL, the production database the registry and audit tests also run on
# (tests/postgres.py starts a throwaway server from /usr/lib/postgresql/*/bin)
APT_PACKAGES+=(postgresql)
# the annual report: a CJK font for the PDF's Japanese text (matplotlib draws it), and
# pdftoppm/pdftotext, with which the tests read the PDF back; jq, with which the report's
# figures are re-run from `visiting audit export`
APT_PACKAGES+=(fonts-noto-cjk poppler-utils jq)
# the browser tests (tests/e2e): Debian's Chromium, which Playwright (dev extra) drives
# with executable_path=; `playwright install` and its browser downloads are never used.
# Its Japanese text is drawn with fonts-noto-cjk, above.
APT_PACKAGES+=(chromium)
# the demo IdP and the JupyterHub proxy run on Node; a Node from elsewhere is fine
command -v node >/dev/null && command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
# Hail (the analysis extra) runs Spark on a JVM; 17 is what the images carry
command -v java >/dev/null || APT_PACKAGES+=(openjdk-17-jre-headless)

log() { printf '[setup] %s\n' "$*"; }
# pip, without the warnings a machine's pip.conf may cause for find-links folders it lacks
pip_() { .venv/bin/python -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python: one virtual environment with every extra the tests use, installed from
# requirements/host.lock only (exact versions, hash-checked; nothing is resolved here:
# `make lock` does that on purpose). pip, setuptools and wheel come from the lock first,
# so that packages built from source (pyspark) and the project itself are built with the
# locked setuptools rather than one fetched for an isolated build.
PY=${PYTHON:-python3}
LOCK=requirements/host.lock
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.visiting-installed
want=$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -f "$stamp"
  log "installing Python packages into .venv from $LOCK"
  boot=$(mktemp)
  python3 scripts/locks.py select "$LOCK" pip setuptools wheel >"$boot"
  pip_ install -q --disable-pip-version-check --require-hashes --no-deps -r "$boot"
  rm -f "$boot"
  pip_ install -q --require-hashes --no-deps --no-build-isolation -r "$LOCK"
  pip_ install -q --no-deps --no-build-isolation -e .
  # a package the lock no longer holds (an earlier lock's) goes
  extra=$(.venv/bin/pip list --format=freeze 2>/dev/null | python3 scripts/locks.py extraneous "$LOCK" visiting-workspace)
  if [ -n "$extra" ]; then
    log "removing packages the lock does not hold: $(echo $extra)"
    # shellcheck disable=SC2086
    pip_ uninstall -q -y $extra
  fi
  echo "$want" > "$stamp"
fi
# A broken set (one package's requirement not met by another's version) stops here,
# with the packages named, before anything runs on it.
if ! check=$(.venv/bin/pip check 2>&1); then
  log "error: the packages in .venv do not fit together (pip check):"
  printf '%s\n' "$check" >&2
  exit 1
fi

# Node: the OIDC provider and configurable-http-proxy, pinned by package-lock.json.
nstamp=node_modules/.visiting-installed
nwant=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$nstamp" ] || [ "$(cat "$nstamp")" != "$nwant" ]; then
  log "installing Node packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$nwant" > "$nstamp"
fi
log "ready"
