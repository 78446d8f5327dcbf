#!/usr/bin/env bash
# What the reliability tests need beyond Python (issue 11):
#   chattr (e2fsprogs) makes a store file read-only even for root, for the read-only store test
#   (tests/integration/test_service_loop.py).
# Usage: scripts/reliability-tools.sh install   (idempotent; root, Debian)
set -euo pipefail
case "${1:-}" in
    install)
        if ! command -v chattr >/dev/null; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                e2fsprogs >/dev/null
        fi
        ;;
    *)
        echo "usage: $0 install" >&2
        exit 2
        ;;
esac
