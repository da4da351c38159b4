#!/usr/bin/env bash
# Makes the project venv (.venv) for development, with no root and no apt: from /usr/bin/python3 with
# --system-site-packages (so that it sees the distribution's BCC when it is installed), then
# `pip install -e '.[test]'`.  Idempotent: pip runs again only when pyproject.toml (or the checkout's
# path) changed since the last install, or the package does not import.  scripts/setup.sh calls it as
# root after installing the distribution's packages; `make lint` and `make test-unit` call it as anyone.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd -P)
VENV=$REPO/.venv

log() { printf 'venv: %s\n' "$*"; }
die() { printf 'venv: ERROR: %s\n' "$*" >&2; exit 1; }

[ -x /usr/bin/python3 ] || die "/usr/bin/python3 is missing (the system interpreter, which BCC is installed for)"

venv_ok() {
    [ -x "$VENV/bin/python" ] && [ -f "$VENV/pyvenv.cfg" ] &&
        grep -Eq '^home *= */usr/bin$' "$VENV/pyvenv.cfg" &&
        grep -Eq '^include-system-site-packages *= *true$' "$VENV/pyvenv.cfg"
}
if ! venv_ok; then
    if [ -e "$VENV" ]; then
        log "recreating $VENV (it was not made from /usr/bin/python3 with --system-site-packages)"
        rm -rf "$VENV"
    fi
    log "creating $VENV from /usr/bin/python3"
    /usr/bin/python3 -m venv --system-site-packages "$VENV" ||
        die "could not create $VENV (on Debian or Ubuntu: apt-get install python3-venv)"
fi

STAMP=$VENV/.ironpost-installed
want=$( (cat pyproject.toml; printf '%s\n' "$REPO") | sha256sum | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ] || ! (cd / && "$VENV/bin/python" -c 'import ironpost_tui' 2>/dev/null); then
    log "pip install -e '.[test]' into $VENV"
    rm -f "$STAMP"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
    printf '%s\n' "$want" >"$STAMP"
fi
