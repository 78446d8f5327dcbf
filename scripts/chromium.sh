#!/usr/bin/env bash
# Headless Chromium for the web dashboard's browser tests (tests/e2e/test_web_browser.py).
#
#   bash scripts/chromium.sh install   # apt-get install chromium chromium-driver (root; idempotent)
#   bash scripts/chromium.sh check     # print the versions; exit 1 if either is missing
#
# Debian's chromium and its matching chromedriver: the tests drive the browser through
# chromedriver with selenium (a test dependency), which is given both paths, so nothing is
# downloaded at run time. fonts-dejavu-core: text renders on a bare image too. The tests start
# Chromium themselves, headless, as root (--no-sandbox), with a fresh profile in a temporary
# folder and Chromium's own calls to Google hosts turned off (see the test module).
#
# Exit codes: 0 ok, 1 failure (the reason on stderr), 2 usage.
set -euo pipefail

PROG=chromium
PACKAGES=(chromium chromium-driver fonts-dejavu-core)

say() { echo "$PROG: $*"; }
fail() { echo "$PROG: $*" >&2; exit 1; }
usage() { sed -n '2,5p' "$0" >&2; exit 2; }

have_all() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
        && dpkg -s fonts-dejavu-core >/dev/null 2>&1
}

cmd_install() {
    if have_all; then
        say "already installed"
        return
    fi
    [ "$(id -u)" = 0 ] || fail "install needs root (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq  # stale or missing package lists make the install fail on a fresh machine
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    have_all || fail "installed, but chromium or chromedriver is not on PATH"
    say "installed: $(chromium --version 2>/dev/null | head -1)"
}

cmd_check() {
    have_all || fail "chromium, chromedriver or fonts-dejavu-core missing: bash $0 install"
    chromium --version 2>/dev/null | head -1
    chromedriver --version | head -1
}

main() {
    [ $# = 1 ] || usage
    case "$1" in
        install) cmd_install ;;
        check) cmd_check ;;
        *) usage ;;
    esac
}

main "$@"
