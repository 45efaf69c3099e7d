#!/usr/bin/env bash
# Build the usage-period banner (@visiting/guard-banner) as a prebuilt JupyterLab extension.
#
#   scripts/labextension.sh [--force] [--core-path DIR]
#
# Runs on the host, since the image build has no network: `npm ci` installs the
# builder and the JupyterLab packages pinned by the extension's
# package-lock.json, then `jupyter labextension build` from the project's .venv
# writes build/labextension/visiting-guard-banner (package.json's outputDir),
# which scripts/images.sh copies into the singleuser image.
# Nothing runs when the stamp beside the output holds the hash of the inputs:
# package.json, package-lock.json, src/, style/ and the JupyterLab core.
#
# --core-path DIR  a JupyterLab core: the folder (jupyterlab/staging) whose
#     package.json says which shared packages and versions the extension links
#     against. Default: the .venv's JupyterLab; images.sh passes the image's.
#
# Prints the output folder on stdout; the build's log is in build/labextension/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXT=$ROOT/extensions/guard/labextension
VENV=$ROOT/.venv
WORK=$ROOT/build/labextension
# Bump when the build steps below change in a way that must rebuild.
RECIPE=1

FORCE=
CORE_PATH=

log() { printf '[labextension] %s\n' "$*" >&2; }
die() { printf '[labextension] error: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum | cut -c1-64; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

check_tools() {
  local tool
  for tool in node npm; do
    command -v "$tool" >/dev/null ||
      die "$tool is not on PATH: the JupyterLab extension is built with Node.js and npm (scripts/setup.sh installs Debian's nodejs and npm; any Node >= 20 on PATH will do)"
  done
  [ -x "$VENV/bin/jupyter-labextension" ] ||
    die "$VENV has no JupyterLab (jupyter-labextension): run scripts/setup.sh, which installs the dev extra"
}

# package.json's jupyterlab.outputDir, resolved against the extension's folder.
output_dir() {
  "$VENV/bin/python" -c 'import json, os, sys
ext = sys.argv[1]
out = json.load(open(os.path.join(ext, "package.json")))["jupyterlab"].get("outputDir", "static")
print(os.path.normpath(os.path.join(ext, out)))' "$EXT"
}

default_core_path() {
  # find_spec, not import: importing jupyterlab takes seconds.
  "$VENV/bin/python" -c 'import importlib.util, os
print(os.path.join(importlib.util.find_spec("jupyterlab").submodule_search_locations[0], "staging"))'
}

inputs_hash() {
  {
    echo "recipe=$RECIPE"
    (cd "$EXT" && find package.json package-lock.json src style -type f | LC_ALL=C sort |
      xargs -d '\n' sha256sum)
    echo "core $(sha <"$CORE_PATH/package.json")"
  } | sha
}

# npm ci replaces node_modules whole, so the stamp inside it goes with it.
install_node_modules() {
  local want stamp=$EXT/node_modules/.visiting-installed
  want=$(cat "$EXT/package.json" "$EXT/package-lock.json" | sha)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "installing the extension's Node packages (npm ci)"
  (cd "$EXT" && npm ci --no-audit --no-fund --loglevel=error) >"$WORK/npm.log" 2>&1 || {
    tail -n 30 "$WORK/npm.log" >&2
    die "npm ci failed in $EXT (log: $WORK/npm.log); if package.json changed, update package-lock.json with npm install there"
  }
  echo "$want" >"$stamp"
}

build() {
  local out=$1
  # jupyter labextension hands over to the jupyter-builder command by name, and
  # the builder looks up node on PATH. --core-path is the option every
  # JupyterLab 4 takes; without it JupyterLab 4.6 would download a core from npm.
  if ! (cd "$EXT" && PATH=$VENV/bin:$PATH "$VENV/bin/jupyter-labextension" build \
    --core-path "$CORE_PATH" .) >"$WORK/build.log" 2>&1; then
    # yarn.js's "Dynamic require" trace is noise: it comes from a config probe
    # that fails under this repository's "type": "module" package.json.
    grep -v '^(()=>' "$WORK/build.log" | cut -c1-300 | tail -n 30 >&2
    die "jupyter labextension build failed (log: $WORK/build.log)"
  fi
  grep -q '"_build"' "$out/package.json" 2>/dev/null ||
    die "the build wrote no $out/package.json with jupyterlab._build (log: $WORK/build.log)"
}

main() {
  while (($#)); do
    case $1 in
      --force) FORCE=1 ;;
      --core-path)
        [ $# -ge 2 ] || usage
        CORE_PATH=$2
        shift
        ;;
      -h | --help) usage ;;
      *) log "unknown argument: $1"; usage ;;
    esac
    shift
  done
  check_tools
  CORE_PATH=${CORE_PATH:-$(default_core_path)}
  [ -f "$CORE_PATH/package.json" ] || die "no JupyterLab core at $CORE_PATH (no package.json there)"

  mkdir -p "$WORK"
  exec 9>"$WORK/.lock"
  flock 9

  local out name stamp inputs started
  out=$(output_dir)
  name=$(basename "$out")
  stamp=$WORK/.$name.inputs
  inputs=$(inputs_hash)
  if [ -z "$FORCE" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ] &&
    [ -f "$out/package.json" ]; then
    echo "$out"
    return 0
  fi
  started=$SECONDS
  rm -f "$stamp"
  install_node_modules
  log "building $name against JupyterLab $(
    "$VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
      "$CORE_PATH/package.json"
  )"
  build "$out"
  echo "$inputs" >"$stamp"
  log "built $out in $((SECONDS - started))s"
  echo "$out"
}

main "$@"
