#!/usr/bin/env bash
# Sets up a Debian 12 / Ubuntu 24.04+ host for ironpost-tui: distribution
# packages (BCC, bpftool, the test and benchmark tools), kernel headers for
# BCC, bpffs, and the project venv (.venv, from /usr/bin/python3 so that it
# sees the distribution's BCC).  Idempotent and quick on a second run.
# Run as root:   bash scripts/setup.sh
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd -P)

log() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: WARNING: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo bash scripts/setup.sh)"
command -v apt-get >/dev/null || die "needs a Debian or Ubuntu host (apt-get not found)"

DISTRO=debian
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    case " ${ID:-} ${ID_LIKE:-} " in
        *" ubuntu "*) DISTRO=ubuntu ;;
        *" debian "*) DISTRO=debian ;;
        *) warn "untested distribution '${ID:-?}', treating it as Debian" ;;
    esac
fi

export DEBIAN_FRONTEND=noninteractive
KREL=$(uname -r)

# --- apt helpers -------------------------------------------------------------
APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}

# Keep package maintainer scripts from starting daemons (prometheus,
# node-exporter, ...) while we install: tests start what they need themselves.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
cleanup_policy_rc() {
    if [ "$POLICY_RC_OURS" -eq 1 ]; then rm -f "$POLICY_RC"; fi
}
trap cleanup_policy_rc EXIT

apt_install() {
    apt_update_once
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\n# temporary, from ironpost-tui scripts/setup.sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
    log "apt-get install $*"
    apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" >/dev/null
    cleanup_policy_rc
    POLICY_RC_OURS=0
}

# (grep without -q: it reads all its input, so no SIGPIPE upsets pipefail)
installed() { dpkg -s "$1" 2>/dev/null | grep '^Status: install ok installed' >/dev/null; }

has_candidate() {
    local c
    c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && !c {c = $2} END {print c}')
    [ -n "$c" ] && [ "$c" != "(none)" ]
}

# --- distribution packages ---------------------------------------------------
REQUIRED=(python3-bpfcc iproute2 python3-venv python3-pip)
TOOLS=(iputils-ping openssl xdp-tools nmap hping3 iperf3 tcpdump netsniff-ng iptables nftables prometheus tmux ethtool librsvg2-bin
    openssh-server sudo fail2ban tshark)

missing=()
for p in "${REQUIRED[@]}" "${TOOLS[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    to_install=()
    for p in "${missing[@]}"; do
        if has_candidate "$p"; then
            to_install+=("$p")
        elif [[ " ${REQUIRED[*]} " == *" $p "* ]]; then
            die "required package $p is not available from apt on this host"
        else
            warn "package $p is not available from apt on this host; skipping it"
        fi
    done
    [ "${#to_install[@]}" -eq 0 ] || apt_install "${to_install[@]}"
fi

# bpftool: its own package on Debian; on Ubuntu /usr/sbin/bpftool is a wrapper
# from linux-tools-common that needs the linux-tools package of the kernel.
bpftool_works() { bpftool version >/dev/null 2>&1; }
if ! bpftool_works; then
    apt_update_once
    for p in bpftool "linux-tools-$KREL" linux-tools-generic linux-tools-common; do
        if has_candidate "$p" && ! installed "$p"; then
            apt_install "$p" || true
        fi
        bpftool_works && break
    done
    if ! bpftool_works; then
        # A linux-tools package for another kernel version still has a usable bpftool.
        found=$(find /usr/lib/linux-tools* -name bpftool -type f -perm -u+x 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$found" ]; then
            ln -sfn "$found" /usr/local/sbin/bpftool
            hash -r
            log "NOTICE: linked /usr/local/sbin/bpftool -> $found (no bpftool built for kernel $KREL)"
        fi
    fi
    bpftool_works || warn "bpftool is not available"
fi

# libbpf.so.1 (ironpost_tui/kernel/libbpf.py loads it with ctypes).
has_libbpf1() { ldconfig -p 2>/dev/null | grep 'libbpf\.so\.1 ' >/dev/null; }
if ! has_libbpf1; then
    apt_update_once
    if has_candidate libbpf1 && ! installed libbpf1; then apt_install libbpf1; fi
    # Nothing runs without it (the product says so too, exit 4): stop here, not at the first start.
    has_libbpf1 || die "libbpf.so.1 (libbpf 1.0 or newer), which ironpost-tui needs, is not on this host and apt has" \
        "no libbpf1 that provides it (Ubuntu 22.04 packages only libbpf 0.5): use Debian 12 or Ubuntu 24.04+" \
        "(the README's Quick start)"
fi

# --- CrowdSec (the tests run its Local API themselves; tests/support/crowdsec.py) ----
# The package's postinst registers with CrowdSec's Central API, which fails without internet and leaves
# the package half-configured; a non-empty online_api_credentials.yaml written first tells it to skip
# that.  policy-rc.d (apt_install) keeps it from starting the daemon: nothing of it runs afterwards.
if ! installed crowdsec; then
    apt_update_once
    if has_candidate crowdsec; then
        CS_CREDS=/etc/crowdsec/online_api_credentials.yaml
        mkdir -p /etc/crowdsec
        if [ ! -s "$CS_CREDS" ]; then
            printf '# written by ironpost-tui scripts/setup.sh: no Central API registration (offline)\nurl: ""\n' >"$CS_CREDS"
            chmod 600 "$CS_CREDS"
        fi
        apt_install crowdsec
    else
        warn "package crowdsec is not available from apt on this host; the CrowdSec tests cannot run"
    fi
fi

# --- kernel headers for BCC --------------------------------------------------
MODDIR=/lib/modules/$KREL
if [ -d "$MODDIR/build/include" ]; then
    target=$(readlink -f "$MODDIR/build")
    case "$target" in
        *"$KREL"*) ;;
        *) log "NOTICE: kernel headers for $KREL are generic ones ($target), not the running kernel's own" ;;
    esac
else
    apt_update_once
    if has_candidate "linux-headers-$KREL"; then
        installed "linux-headers-$KREL" || apt_install "linux-headers-$KREL"
    else
        if [ "$DISTRO" = ubuntu ]; then
            meta=linux-headers-generic
            flavour=generic
        else
            meta=linux-headers-$(dpkg --print-architecture)
            flavour=$(dpkg --print-architecture)
        fi
        installed "$meta" || apt_install "$meta"
        # The meta package depends on the versioned one: linux-headers-<ver>-<flavour>.
        dep=$(dpkg-query -W -f='${Depends}' "$meta" | tr ',' '\n' |
            sed -n "s/^ *\(linux-headers-[^ ]*-$flavour\)\b.*/\1/p" | sed -n 1p || true)
        if [ -n "$dep" ] && [ -d "/usr/src/$dep" ]; then
            build=/usr/src/$dep
        else
            build=$(find /usr/src -maxdepth 1 -type d -name "linux-headers-*-$flavour" | sort -V | tail -n 1)
        fi
        [ -n "$build" ] && [ -d "$build/include" ] || die "could not find the headers installed by $meta under /usr/src"
        ver=${build#/usr/src/linux-headers-}
        ver=${ver%-"$flavour"}
        if [ -d "/usr/src/linux-headers-$ver-common" ]; then
            source=/usr/src/linux-headers-$ver-common # Debian's split packages
        elif [ -d "/usr/src/linux-headers-$ver" ]; then
            source=/usr/src/linux-headers-$ver # Ubuntu's common part
        else
            source=$build
        fi
        mkdir -p "$MODDIR"
        for link in build source; do
            if [ -e "$MODDIR/$link" ] && [ ! -L "$MODDIR/$link" ]; then
                die "$MODDIR/$link exists and is not a symlink; not touching it"
            fi
        done
        ln -sfn "$build" "$MODDIR/build"
        ln -sfn "$source" "$MODDIR/source"
        log "NOTICE: the running kernel $KREL has no headers package ($DISTRO has no linux-headers-$KREL)."
        log "NOTICE: linked MISMATCHED generic headers for BCC:"
        log "NOTICE:   $MODDIR/build  -> $build"
        log "NOTICE:   $MODDIR/source -> $source"
    fi
    [ -d "$MODDIR/build/include" ] || die "kernel headers are still missing at $MODDIR/build"
fi

# --- bpffs ---------------------------------------------------------------------
if ! awk '$2 == "/sys/fs/bpf" && $3 == "bpf" {found = 1} END {exit !found}' /proc/mounts; then
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf
    log "mounted bpffs at /sys/fs/bpf"
fi

# --- the venv --------------------------------------------------------------------
# (scripts/venv.sh needs no root: `make lint` and `make test-unit` call it on their own)
bash "$REPO/scripts/venv.sh"
VENV=$REPO/.venv

bcc_version=$(cd / && "$VENV/bin/python" -c 'import bcc; print(getattr(bcc, "__version__", "?"))' 2>/dev/null) ||
    die "BCC does not import in $VENV (python3-bpfcc is installed for /usr/bin/python3?)"

log "ready: $VENV ($("$VENV/bin/python" -V 2>&1)), BCC $bcc_version, headers $(readlink -f "$MODDIR/build"), bpffs mounted"
