#!/usr/bin/env bash
# Makes the two base images deploy/Dockerfile names, debian:bookworm and debian:bookworm-slim,
# in buildah's local storage without a registry: a debootstrap of Debian 12 (minbase, from
# deb.debian.org) with the container tweaks the official images carry, imported and tagged as
# docker.io/library/debian:bookworm; a copy of it trimmed the way the official slim variant is,
# tagged docker.io/library/debian:bookworm-slim. scripts/image-test.sh runs it; run as root.
#
#     bash tests/image/make-base.sh            # import from the cache, debootstrap if not cached
#     bash tests/image/make-base.sh --rebuild  # debootstrap again (picks up Debian's updates)
#
# The root filesystems are cached as tarballs in METASERVE_IMAGE_CACHE (default
# /var/cache/metaserve-image), outside the repository: later runs import them (a few seconds)
# or find the images already in buildah's storage and do nothing. The first run (debootstrap,
# then the upgrade to the current point release and security updates) takes about 2 minutes.
#
# Official-image tweaks reproduced (debuerreotype's minimizing-config and slimify):
#   both:  policy-rc.d (no service starts during installs), dpkg force-unsafe-io, the apt.conf.d
#          docker-clean / -gzip-indexes / -no-languages / -autoremove-suggests files, deb822
#          sources for bookworm, bookworm-updates and bookworm-security, the packages upgraded
#          to the current point release and security updates, apt lists and caches emptied,
#          logs removed; config Env PATH=... and Cmd ["bash"].
#   slim:  /usr/share/{doc,groff,info,linda,lintian/overrides,locale,man}/* removed (copyright
#          files and locale.alias kept) and /etc/dpkg/dpkg.cfg.d/docker with the matching
#          path-exclude / path-include lines, so later apt installs do not bring them back.
set -euo pipefail

CACHE=${METASERVE_IMAGE_CACHE:-/var/cache/metaserve-image}
MIRROR=${METASERVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${METASERVE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
FULL=docker.io/library/debian:bookworm
SLIM=docker.io/library/debian:bookworm-slim

log() { printf 'make-base: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

rebuild=0
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        -h | --help)
            sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument '$arg' (expected --rebuild)" ;;
    esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot, buildah's storage)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (apt-get install debootstrap)"
command -v buildah >/dev/null 2>&1 || die "buildah not found (apt-get install buildah)"

# Quoted: these are dpkg path patterns, never to be expanded against this machine's files.
SLIM_EXCLUDES=('/usr/share/doc/*' '/usr/share/groff/*' '/usr/share/info/*' '/usr/share/linda/*'
    '/usr/share/lintian/overrides/*' '/usr/share/locale/*' '/usr/share/man/*')
SLIM_INCLUDES=('/usr/share/doc/*/copyright' '/usr/share/doc/kde/HTML/C/*'
    '/usr/share/gnome/help/*/C/*' '/usr/share/locale/all_languages' '/usr/share/locale/currency/*'
    '/usr/share/locale/l10n/*' '/usr/share/locale/languages' '/usr/share/locale/locale.alias'
    '/usr/share/omf/*/*-C.emf')

# ---- the root filesystem: debootstrap and the official images' container tweaks ----

# Mounts proc into ROOT for the duration of a command run in it; unmounts even on failure.
in_root() { # in_root ROOT CMD...
    local root=$1 rc=0
    shift
    mount -t proc proc "$root/proc"
    chroot "$root" "$@" || rc=$?
    umount "$root/proc"
    return "$rc"
}

minimize() { # minimize ROOT
    local root=$1
    printf '#!/bin/sh\n# No service starts during package installs in an image build.\nexit 101\n' \
        >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    printf '# Image builds do not survive power loss anyway: skip the syncs.\nforce-unsafe-io\n' \
        >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
    printf 'Apt::AutoRemove::SuggestsImportant "false";\n' \
        >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb'
    clean+=' /var/cache/apt/*.bin || true";'
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<EOF
# apt-get clean after every install: caches would only waste space in image layers.
DPkg::Post-Invoke { $clean };
APT::Update::Post-Invoke { $clean };

Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'Acquire::GzipIndexes "true";\n' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    chmod 0644 "$root"/etc/apt/apt.conf.d/docker-* "$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"

    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # The current point release and security updates, as the official images are rebuilt with.
    local aptlog=$root/../apt.log
    {
        in_root "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q update &&
            in_root "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q -y dist-upgrade &&
            in_root "$root" apt-get clean
    } >"$aptlog" 2>&1 || {
        tail -n 20 "$aptlog" >&2
        die "apt-get in the new root failed (log: $aptlog)"
    }

    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/ldconfig/aux-cache
    rm -f "$root"/var/log/dpkg.log "$root"/var/log/bootstrap.log "$root"/var/log/alternatives.log \
        "$root"/var/log/apt/history.log "$root"/var/log/apt/term.log \
        "$root"/etc/apt/apt.conf.d/01autoremove-kernels
    # The runtime supplies these; the host's copies must not end up in an image.
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
}

# The official slim variant: dpkg path-excludes, and the excluded files removed (two passes, as
# debuerreotype does: regular files not matching an include, then empty directories and dangling
# symlinks until none are left). find runs inside ROOT so absolute symlinks resolve there.
slimify() { # slimify ROOT
    local root=$1 cfg=$1/etc/dpkg/dpkg.cfg.d/docker pattern dir include
    local -a keep=()
    for include in "${SLIM_INCLUDES[@]}"; do
        [[ ${#keep[@]} -eq 0 ]] || keep+=(-o)
        keep+=(-path "$include")
    done
    {
        printf '# This is the "slim" variant of the Debian base image.\n'
        printf '# Many files which are normally unnecessary in containers are excluded,\n'
        printf '# and this configuration file keeps them that way.\n\n'
        for pattern in "${SLIM_EXCLUDES[@]}"; do printf 'path-exclude %s\n' "$pattern"; done
        printf '\n'
        for include in "${SLIM_INCLUDES[@]}"; do printf 'path-include %s\n' "$include"; done
    } >"$cfg"
    chmod 0644 "$cfg"
    for pattern in "${SLIM_EXCLUDES[@]}"; do
        dir=${pattern%/\*}
        [[ -d $root$dir ]] || continue
        in_root "$root" find "$dir" -depth -mindepth 1 -not \( "${keep[@]}" \) \
            -not \( -type d -o -type l \) -exec rm -f '{}' +
        while [[ $(in_root "$root" find "$dir" -depth -mindepth 1 \( -empty -o -xtype l \) \
            -exec rm -rf '{}' ';' -printf . | wc -c) -gt 0 ]]; do :; done
    done
}

# A tarball of ROOT as an image layer: no device nodes, proc, sys or apt caches.
pack() { # pack ROOT TARBALL
    tar -C "$1" --numeric-owner --xattrs --xattrs-include='*' --acls \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
        --exclude='./tmp/*' -cf "$2.tmp" .
    mv "$2.tmp" "$2"
}

make_tarballs() {
    local work=$CACHE/work
    rm -rf "$work"
    mkdir -p "$work"
    log "debootstrap --variant=minbase $SUITE from $MIRROR (the first run only)"
    debootstrap --variant=minbase "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
        {
            tail -n 20 "$work/debootstrap.log" >&2
            die "debootstrap failed (log: $work/debootstrap.log)"
        }
    minimize "$work/rootfs"
    pack "$work/rootfs" "$CACHE/debian-$SUITE.tar"
    slimify "$work/rootfs"
    pack "$work/rootfs" "$CACHE/debian-$SUITE-slim.tar"
    rm -rf "$work"
    log "cached $CACHE/debian-$SUITE.tar and $CACHE/debian-$SUITE-slim.tar"
}

# ---- the images: one layer each, the official images' config ----

import_image() { # import_image TARBALL NAME WHAT
    local ctr mnt
    ctr=$(buildah from --pull=never scratch)
    mnt=$(buildah mount "$ctr")
    tar -C "$mnt" --numeric-owner --xattrs --xattrs-include='*' --acls -xpf "$1" ||
        {
            buildah rm "$ctr" >/dev/null
            die "unpacking $1 failed"
        }
    buildah umount "$ctr" >/dev/null
    buildah config --os linux --arch amd64 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd bash --created-by "$3" "$ctr"
    buildah commit --quiet --rm --format docker "$ctr" "$2" >/dev/null
    log "imported $1 as $2"
}

mkdir -p "$CACHE"
if [[ $rebuild -eq 1 ]]; then
    rm -f "$CACHE/debian-$SUITE.tar" "$CACHE/debian-$SUITE-slim.tar"
    buildah rmi "$FULL" "$SLIM" >/dev/null 2>&1 || true
fi
have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }
if have_image "$FULL" && have_image "$SLIM"; then
    log "$FULL and $SLIM already in buildah's storage"
    exit 0
fi
if [[ ! -f $CACHE/debian-$SUITE.tar || ! -f $CACHE/debian-$SUITE-slim.tar ]]; then
    make_tarballs
fi
have_image "$FULL" ||
    import_image "$CACHE/debian-$SUITE.tar" "$FULL" \
        "debootstrap --variant=minbase $SUITE (make-base.sh)"
have_image "$SLIM" ||
    import_image "$CACHE/debian-$SUITE-slim.tar" "$SLIM" \
        "debootstrap --variant=minbase $SUITE, slimmed (make-base.sh)"
