#!/usr/bin/env bash
# System packages the test suite needs: Debian's Chromium (browser tests drive it with
# Playwright; Playwright never downloads a browser here), redis-server (hub tests use
# a real Redis) and nats-server (the NATS hub's fault tests start their own; the other
# NATS tests use the one at NATS_URL, default 127.0.0.1:4222). Installed with apt-get when missing and possible; otherwise this stops
# and says how to install them.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    exit 0
fi
echo "The tests need: ${missing[*]}." >&2
echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
exit 1
