#!/usr/bin/env bash
# Test set-up: Debian's Chromium, which the report test opens the HTML report in (headless).
# Installed from the distribution's packages (no browser download of a test tool's own).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "scripts/install_browser.sh: /usr/bin/chromium is missing; install Debian's 'chromium'" \
       "package (apt-get install chromium) as root, then run the tests again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
