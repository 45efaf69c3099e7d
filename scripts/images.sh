#!/usr/bin/env bash
# Build the project's container images offline, each only when its inputs changed.
#
#   scripts/images.sh [--force]
#
#   visiting/base        Debian root made by debootstrap from the host's apt mirror
#   visiting/singleuser  a researcher's JupyterLab (FROM base)
#   visiting/dask        a site's Dask scheduler/workers (FROM base)
#
# No container registry exists, so nothing is pulled: the base comes from the
# host's Debian mirror, the Python packages from a wheelhouse downloaded on the
# host from requirements/images.lock (exact versions, hash-checked; nothing is
# resolved here), and `docker build --network=none` sees only its build context.
# Each image is labelled with the hash of its inputs (org.visiting.inputs) and
# tagged :latest and :<hash>; an image whose label matches is not rebuilt.
# The singleuser image also gets the guard's JupyterLab banner, built on the
# host by scripts/labextension.sh against the wheelhouse's JupyterLab, and the
# guard's enable file; both are part of its inputs.
#
# Environment: VISITING_CACHE (default ~/.cache/visiting) keeps the wheelhouse,
# downloaded .debs and build logs; VISITING_DEBIAN_MIRROR and
# VISITING_DEBIAN_SECURITY_MIRROR override the mirrors read from apt's config.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR=$ROOT/images
CACHE=${VISITING_CACHE:-$HOME/.cache/visiting}
LOGS=$CACHE/logs
SUITE=bookworm
PY_VERSION=3.11 # bookworm's python3
DERIVED=(singleuser dask)
# Bump when the build steps below change in a way that must rebuild the
# derived images even though none of their files did.
RECIPE=2
# The Python/platform the wheels are for: bookworm's CPython 3.11 on x86_64
# with glibc 2.36, so any manylinux tag up to 2_36 runs there.
PIP_TARGET=(--only-binary=:all: --python-version "$PY_VERSION" --implementation cp --abi cp311
  --platform any --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
for _minor in $(seq 5 36); do PIP_TARGET+=(--platform "manylinux_2_${_minor}_x86_64"); done
unset _minor
# The base's image config; part of its inputs.
BASE_CHANGES=(
  'ENV LANG=C.UTF-8'
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  'ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64'
  'ENV TZ=Asia/Tokyo'
  'CMD ["/bin/bash"]'
)

FORCE=
BUILT=()
SKIPPED=()

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum | cut -c1-64; }
short() { cut -c1-12 <<<"$1"; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# --- environment --------------------------------------------------------------

host_pip() {
  if [ -x "$ROOT/.venv/bin/pip" ]; then "$ROOT/.venv/bin/pip" "$@"; else python3 -m pip "$@"; fi
}

project_version() {
  python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$ROOT/pyproject.toml"
}

# The first URI apt uses for SUITE, from deb822 .sources files or one-line
# .list files, so the base comes from wherever this host's packages come from.
apt_uri_for_suite() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$suite" '
      function flush() {
        if (!found && uris != "" && index(" " types " ", " deb ") && index(" " suites " ", " " want " ")) {
          split(uris, a, " "); print a[1]; found = 1
        }
        uris = ""; suites = ""; types = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0 }
      /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { flush() }' "$f" | head -n1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v want="$suite" '$1 == "deb" && $3 == want { print $2 }'
  done | head -n1
}

debian_mirrors() {
  MIRROR=${VISITING_DEBIAN_MIRROR:-$(apt_uri_for_suite "$SUITE" | head -n1)}
  SECURITY_MIRROR=${VISITING_DEBIAN_SECURITY_MIRROR-$(apt_uri_for_suite "$SUITE-security" | head -n1)}
  [ -n "$MIRROR" ] || die "no apt source for '$SUITE' in /etc/apt/sources.list{,.d/*}; set VISITING_DEBIAN_MIRROR"
  [ -n "$SECURITY_MIRROR" ] || log "no apt source for '$SUITE-security' here: the base gets no security updates"
}

use_engine() {
  "$ROOT/scripts/docker.sh" up
  eval "$("$ROOT/scripts/docker.sh" env)"
  export DOCKER_HOST
  # No buildx here: the classic builder is what `docker build --network=none` gets.
  export DOCKER_BUILDKIT=0
}

# Another images.sh (a test fixture, a second terminal) would race for the
# same tags and cache folders.
take_lock() {
  mkdir -p "$CACHE" "$LOGS" "$CACHE/build"
  exec 9>"$CACHE/images.lock"
  if ! flock -n 9; then
    log "another scripts/images.sh is running; waiting for it"
    flock 9
  fi
}

label_of() {
  docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# True when IMAGE:<short hash> exists with the same inputs label; retags
# :latest to it, since a failed or older build may have moved :latest.
up_to_date() {
  local repo=$1 inputs=$2
  [ -z "$FORCE" ] || return 1
  [ "$(label_of "$repo:$(short "$inputs")" org.visiting.inputs)" = "$inputs" ] || return 1
  docker tag "$repo:$(short "$inputs")" "$repo:latest"
}

# Older :<hash> tags of a repository are superseded; an image still used by a
# container stays (docker refuses), everything else frees its disk.
drop_old_tags() {
  local repo=$1 keep=$2 tag
  for tag in $(docker image ls --format '{{.Tag}}' "$repo"); do
    [[ $tag =~ ^[0-9a-f]{12}$ && $tag != "$keep" ]] || continue
    if docker image rm "$repo:$tag" >/dev/null 2>&1; then log "removed superseded $repo:$tag"; fi
  done
}

run_logged() {
  local logfile=$1
  shift
  if ! "$@" >"$logfile" 2>&1; then
    log "failed: $*"
    log "last lines of $logfile:"
    grep -v 'is ignored: it is neither a file nor a directory' "$logfile" | tail -n 30 >&2
    return 1
  fi
}

# --- visiting/base -----------------------------------------------------------

base_inputs() {
  {
    echo "suite=$SUITE arch=$(dpkg --print-architecture)"
    cat "$IMAGES_DIR/base/packages.txt" "$IMAGES_DIR/base/mkrootfs.sh"
    printf '%s\n' "${BASE_CHANGES[@]}"
  } | sha
}

ROOTFS_TMP=
cleanup_rootfs() {
  [ -n "$ROOTFS_TMP" ] && [ -d "$ROOTFS_TMP" ] || return 0
  local m
  for m in dev/pts dev sys proc; do
    mountpoint -q "$ROOTFS_TMP/rootfs/$m" && umount -l "$ROOTFS_TMP/rootfs/$m"
  done
  # Never delete through a mount that is still there (it would be the host's /dev).
  if grep -q " $ROOTFS_TMP/" /proc/mounts; then
    log "leaving $ROOTFS_TMP: something is still mounted under it"
    return 0
  fi
  rm -rf --one-file-system "$ROOTFS_TMP"
}

build_base() {
  local inputs repo=visiting/base
  inputs=$(base_inputs)
  BASE_REF=$repo:$(short "$inputs")
  if up_to_date "$repo" "$inputs"; then
    SKIPPED+=("$repo")
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "building $repo runs debootstrap, which needs root (run: sudo $0)"
  debian_mirrors
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  log "building $BASE_REF: debootstrap $SUITE from the host's mirror (the slow step)"
  mkdir -p "$CACHE/build"
  ROOTFS_TMP=$(mktemp -d "$CACHE/build/rootfs.XXXXXX")
  trap cleanup_rootfs EXIT
  SUITE=$SUITE MIRROR=$MIRROR SECURITY_MIRROR=$SECURITY_MIRROR \
    PACKAGES_FILE=$IMAGES_DIR/base/packages.txt DEB_CACHE=$CACHE/debs \
    run_logged "$LOGS/base.log" "$IMAGES_DIR/base/mkrootfs.sh" "$ROOTFS_TMP/rootfs"

  local args=() c
  for c in "${BASE_CHANGES[@]}"; do args+=(--change "$c"); done
  args+=(--change "LABEL org.visiting.project-version=$VERSION"
    --change "LABEL org.visiting.inputs=$inputs"
    --change "LABEL org.visiting.wheels=none")
  tar --numeric-owner -C "$ROOTFS_TMP/rootfs" -c . | docker import "${args[@]}" - "$BASE_REF" >/dev/null
  docker tag "$BASE_REF" "$repo:latest"
  cleanup_rootfs
  trap - EXIT
  drop_old_tags "$repo" "$(short "$inputs")"
  BUILT+=("$repo")
}

# --- wheelhouse ----------------------------------------------------------------

# The wheelhouse holds exactly requirements/images.lock (singleuser and dask resolved
# together by `make lock`): every file hash-checked against the lock, nothing resolved.
WHEELHOUSE_LOCK=$ROOT/requirements/images.lock
SDIST_LIST=$IMAGES_DIR/wheels-from-sdist.txt

# Everything that decides which wheels get downloaded.
wheelhouse_key() {
  {
    echo "recipe=$RECIPE"
    printf '%s\n' "${PIP_TARGET[@]}"
    cat "$SDIST_LIST" "$WHEELHOUSE_LOCK"
  } | sha | cut -c1-16
}

# Download the lock's source-only packages (hash-checked) and build each into a pure
# wheel on the host, with the host lock's setuptools and no build isolation (which would
# fetch an unpinned setuptools); then download every other wheel for the image's Python
# and platform, hash-checked. The folder is named by its key and appears only once
# complete, so it never needs checking again.
ensure_wheelhouse() {
  WHEELHOUSE=$CACHE/wheelhouse-$(wheelhouse_key)
  if [ -s "$WHEELHOUSE/SHA256SUMS" ]; then return 0; fi
  local partial=$WHEELHOUSE.partial f
  rm -rf "$partial"
  mkdir -p "$partial/.sdist"
  log "downloading the wheelhouse of $(basename "$WHEELHOUSE_LOCK") into $WHEELHOUSE"
  python3 "$ROOT/scripts/locks.py" split "$WHEELHOUSE_LOCK" "$SDIST_LIST" \
    "$partial/.binary.txt" "$partial/.source.txt" || die "could not read $WHEELHOUSE_LOCK"
  if [ -s "$partial/.source.txt" ]; then
    log "building wheels of $(cut -d' ' -f1 "$partial/.source.txt" | tr '\n' ' ')on the host (PyPI has no wheel of them)"
    run_logged "$LOGS/pip-sdist.log" host_pip download --progress-bar off --no-deps --no-binary=:all: \
      --no-build-isolation --require-hashes -r "$partial/.source.txt" -d "$partial/.sdist" ||
      die "could not download the source archives that $(basename "$SDIST_LIST") names"
    for f in "$partial"/.sdist/*; do
      run_logged "$LOGS/pip-sdist.log" host_pip wheel --no-deps --no-build-isolation -w "$partial" "$f" ||
        die "could not build a wheel of $(basename "$f")"
    done
  fi
  for f in "$partial"/*.whl; do
    [ -e "$f" ] || continue
    [[ $f == *-none-any.whl ]] ||
      die "$(basename "$f") is not a pure-Python wheel; a host-built wheel of it may not run in the image"
  done
  if ! run_logged "$LOGS/pip-download.log" host_pip download --progress-bar off --no-deps \
    --require-hashes -d "$partial" "${PIP_TARGET[@]}" -r "$partial/.binary.txt"; then
    local missing
    missing=$(grep -oE 'No matching distribution found for .*|THESE PACKAGES DO NOT MATCH THE HASHES.*' "$LOGS/pip-download.log" | head -n1 || true)
    die "pip download of $(basename "$WHEELHOUSE_LOCK") failed${missing:+ ($missing)}; run \`make lock\` if the lock is stale"
  fi
  rm -rf "$partial/.sdist" "$partial/.binary.txt" "$partial/.source.txt"
  (cd "$partial" && sha256sum -- *.whl) >"$partial/SHA256SUMS"
  rm -rf "$WHEELHOUSE"
  mv "$partial" "$WHEELHOUSE"
  log "wheelhouse ready: $(grep -c . "$WHEELHOUSE/SHA256SUMS") wheels, $(du -sh "$WHEELHOUSE" | cut -f1)"
}

# --- the project's own wheel ------------------------------------------------------

# The labextension is no part of the wheel (pyproject.toml excludes it), and
# its node_modules holds thousands of files.
project_files() {
  (cd "$ROOT" && find pyproject.toml README.md hub extensions -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path 'extensions/guard/labextension/*' |
    LC_ALL=C sort)
}

# Built from a copy of the sources, so the build leaves no build/ or
# *.egg-info in the work tree; cached by the sources' hash, so an unchanged
# project costs a hash, not a build.
ensure_project_wheel() {
  local key dir tmp
  key=$(cd "$ROOT" && project_files | xargs -d '\n' sha256sum | sha | cut -c1-16)
  dir=$CACHE/project-$key
  PROJECT_WHEEL=$(find "$dir" -maxdepth 1 -name '*.whl' 2>/dev/null | head -n1 || true)
  [ -z "$PROJECT_WHEEL" ] || return 0
  log "building the project's wheel (sources $key)"
  tmp=$(mktemp -d "$CACHE/build/project.XXXXXX")
  (cd "$ROOT" && project_files | tar -cf - -T -) | tar -xf - -C "$tmp"
  # Fixed zip timestamps: the same sources give the same wheel, so the same hash.
  SOURCE_DATE_EPOCH=315532800 run_logged "$LOGS/project-wheel.log" \
    host_pip wheel --no-deps --no-build-isolation -w "$tmp/out" "$tmp" || die "could not build the project's wheel"
  mkdir -p "$dir"
  mv "$tmp"/out/*.whl "$dir"/
  rm -rf "$tmp"
  PROJECT_WHEEL=$(find "$dir" -maxdepth 1 -name '*.whl' | head -n1)
}

# --- the guard's JupyterLab extension -------------------------------------------

# Built against the core of the JupyterLab wheel the image installs, so the
# banner asks for the shared packages (and versions) that JupyterLab provides.
ensure_labextension() {
  local whl core
  whl=$(find "$WHEELHOUSE" -maxdepth 1 -name 'jupyterlab-[0-9]*.whl' | head -n1)
  [ -n "$whl" ] || die "the wheelhouse has no jupyterlab wheel (images/singleuser/requirements.txt names it)"
  core=$CACHE/build/jupyterlab-core-$(basename "$whl" .whl)
  if [ ! -s "$core/package.json" ]; then
    mkdir -p "$core"
    python3 -c 'import sys, zipfile
sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("jupyterlab/staging/package.json"))' \
      "$whl" >"$core/package.json.partial" || die "no jupyterlab/staging/package.json in $whl"
    mv "$core/package.json.partial" "$core/package.json"
  fi
  LABEXTENSION=$("$ROOT/scripts/labextension.sh" --core-path "$core") ||
    die "could not build the JupyterLab extension (scripts/labextension.sh)"
}

# --- visiting/singleuser and visiting/dask ---------------------------------------

# Files from outside images/NAME that go into its build context, as lines of
# "source<TAB>path in the context"; a folder goes whole.
context_extras() {
  printf '%s\t%s\n' "$IMAGES_DIR/check-env.py" check-env.py
  case $1 in
    singleuser)
      printf '%s\t%s\n' \
        "$LABEXTENSION" labextension \
        "$ROOT/extensions/guard/jupyter-config/visiting-guard.json" jupyter-config/visiting-guard.json \
        "$ROOT/notebooks" tutorials
      ;;
  esac
}

image_inputs() {
  local name=$1 src dest
  {
    echo "recipe=$RECIPE version=$VERSION base=$BASE_ID wheels=$WHEELS_HASH"
    sha <"$ROOT/requirements/$name.lock"
    (cd "$IMAGES_DIR/$name" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum)
    while IFS=$'\t' read -r src dest; do
      echo "== $dest"
      if [ -d "$src" ]; then
        (cd "$src" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum)
      else
        sha256sum <"$src"
      fi
    done < <(context_extras "$name")
  } | sha
}

build_derived() {
  local name=$1 repo=visiting/$1 inputs ctx src dest
  inputs=$(image_inputs "$name")
  if up_to_date "$repo" "$inputs"; then
    SKIPPED+=("$repo")
    return 0
  fi
  log "building $repo:$(short "$inputs") (no network; log: $LOGS/$name.log)"
  ctx=$CACHE/build/context-$name
  rm -rf "$ctx"
  mkdir -p "$ctx/wheels" "$ctx/project"
  cp -a "$IMAGES_DIR/$name/." "$ctx/"
  # Hard links: the wheelhouse is large and never modified in place.
  cp -l "$WHEELHOUSE"/*.whl "$ctx/wheels/" 2>/dev/null || cp "$WHEELHOUSE"/*.whl "$ctx/wheels/"
  cp "$PROJECT_WHEEL" "$ctx/project/"
  # the image's own lock, with the hashes of the wheels built on the host
  python3 "$ROOT/scripts/locks.py" image-lock "$ROOT/requirements/$name.lock" "$WHEELHOUSE" \
    "$ctx/requirements.lock" || die "could not write the lock of $repo"
  while IFS=$'\t' read -r src dest; do
    mkdir -p "$(dirname "$ctx/$dest")"
    cp -a "$src" "$ctx/$dest"
  done < <(context_extras "$name")
  if ! run_logged "$LOGS/$name.log" docker build --network=none --force-rm \
    --build-arg "BASE_IMAGE=$BASE_REF" \
    --build-arg "WHEELHOUSE=$WHEELHOUSE_HASH" \
    --label "org.visiting.project-version=$VERSION" \
    --label "org.visiting.inputs=$inputs" \
    --label "org.visiting.wheels=$WHEELS_HASH" \
    -t "$repo:$(short "$inputs")" -t "$repo:latest" "$ctx"; then
    # pip check's and check-env.py's own lines name the packages that do not fit together
    # (the classic builder colours a step's stderr)
    local broken
    broken=$(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/$name.log" |
      grep -h 'has requirement\|which is not installed\|^check-env: ' | sort -u | tr '\n' ' ' || true)
    [ -z "$broken" ] || die "the packages of $repo do not fit together: $broken"
    die "docker build of $repo failed"
  fi
  rm -rf "$ctx"
  # Keep the builder stage of the current wheelhouse as the cache; older ones
  # hold a whole copy of an old wheelhouse and venv.
  docker image prune -f --filter label=org.visiting.stage=builder \
    --filter "label!=org.visiting.wheelhouse=$WHEELHOUSE_HASH" >/dev/null
  drop_old_tags "$repo" "$(short "$inputs")"
  BUILT+=("$repo")
}

summary() {
  local sizes="" ref size
  for ref in visiting/base visiting/singleuser visiting/dask; do
    size=$(docker image inspect -f '{{.Size}}' "$ref:latest" 2>/dev/null | awk '{ printf "%.2f GB", $1 / 1e9 }')
    sizes+="${sizes:+, }$ref ${size:-missing}"
  done
  log "built: ${BUILT[*]:-nothing}"
  log "up to date (skipped): ${SKIPPED[*]:-none}"
  log "sizes: $sizes"
}

main() {
  while (($#)); do
    case $1 in
      --force) FORCE=1 ;;
      -h | --help) usage ;;
      *) log "unknown argument: $1"; usage ;;
    esac
    shift
  done
  use_engine
  take_lock
  VERSION=$(project_version)

  build_base
  BASE_ID=$(docker image inspect -f '{{.Id}}' "$BASE_REF")

  ensure_wheelhouse
  ensure_project_wheel
  WHEELHOUSE_HASH=$(sha <"$WHEELHOUSE/SHA256SUMS")
  WHEELS_HASH=$({ cat "$WHEELHOUSE/SHA256SUMS"; (cd "$(dirname "$PROJECT_WHEEL")" && sha256sum -- "$(basename "$PROJECT_WHEEL")"); } | sha)
  # before the singleuser image, whose context it is part of
  ensure_labextension

  local name
  for name in "${DERIVED[@]}"; do build_derived "$name"; done
  summary
}

main "$@"
