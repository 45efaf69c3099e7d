#!/usr/bin/env bash
# Make the Debian root of visiting/base with debootstrap, from the mirror the
# host's apt already uses (no container registry exists to pull a base from).
#
#   mkrootfs.sh ROOTFS
#
# Environment (set by scripts/images.sh):
#   SUITE            Debian suite, e.g. bookworm
#   MIRROR           the host's Debian mirror URI
#   SECURITY_MIRROR  the host's security mirror URI ('' to skip security updates)
#   PACKAGES_FILE    the include list (one package a line, # comments)
#   DEB_CACHE        folder that keeps downloaded .debs between builds
#
# This file is one of the base image's inputs: editing it rebuilds the base.
set -euo pipefail

ROOTFS=${1:?usage: mkrootfs.sh ROOTFS}
: "${SUITE:?}" "${MIRROR:?}" "${PACKAGES_FILE:?}" "${DEB_CACHE:?}"
SECURITY_MIRROR=${SECURITY_MIRROR:-}

log() { printf '[base] %s\n' "$*" >&2; }

include_list() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PACKAGES_FILE" | grep -v '^$' | paste -sd, -
}

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

mount_pseudo() {
  mount -t proc proc "$ROOTFS/proc"
  mount -t sysfs sysfs "$ROOTFS/sys"
  mount --bind /dev "$ROOTFS/dev"
  mount --bind /dev/pts "$ROOTFS/dev/pts"
}

umount_pseudo() {
  local m
  for m in dev/pts dev sys proc; do
    if mountpoint -q "$ROOTFS/$m"; then umount -l "$ROOTFS/$m"; fi
  done
}

bootstrap() {
  mkdir -p "$DEB_CACHE"
  log "debootstrap $SUITE (minbase) from $MIRROR"
  debootstrap --variant=minbase --merged-usr --cache-dir="$DEB_CACHE" \
    --include="$(include_list)" "$SUITE" "$ROOTFS" "$MIRROR"
}

# debootstrap only sees the suite itself; bring in bookworm-updates and the
# security archive the way the host gets them, so the base is patched.
apply_updates() {
  local suites="$SUITE $SUITE-updates"
  rm -f "$ROOTFS/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$MIRROR" "$suites"
    if [ -n "$SECURITY_MIRROR" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$SECURITY_MIRROR" "$SUITE"
    fi
  } >"$ROOTFS/etc/apt/sources.list.d/debian.sources"
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  # The build never starts services inside the root.
  printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
  chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
  mount_pseudo
  trap umount_pseudo EXIT
  log "applying $SUITE-updates and $SUITE-security"
  in_root apt-get update -qq
  in_root apt-get -y -qq -o Dpkg::Options::=--force-confold dist-upgrade >/dev/null
  umount_pseudo
  trap - EXIT
}

# Keep the image small and free of host state: apt lists and caches are
# rebuilt by `apt-get update` if anyone ever needs them.
clean() {
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/archives/partial/* \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
    "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/log/dpkg.log "$ROOTFS"/var/log/bootstrap.log \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/root/.cache
  rm -f "$ROOTFS/usr/sbin/policy-rc.d"
  # Docker bind-mounts its own resolv.conf, hosts and hostname into every container.
  : >"$ROOTFS/etc/resolv.conf"
  echo localhost >"$ROOTFS/etc/hostname"
  # C.UTF-8 ships inside glibc (no locales package needed); check it is there.
  [ -d "$ROOTFS/usr/lib/locale/C.utf8" ] || { log "error: C.utf8 locale missing from the root"; exit 1; }
}

bootstrap
apply_updates
clean
log "root ready in $ROOTFS ($(du -sh "$ROOTFS" | cut -f1))"
