#!/usr/bin/env bash
# Browser tests drive Debian's chromium (never a downloaded browser). Install it when missing.
set -euo pipefail
# A CJK font too, so that screenshots of the Chinese pages show characters, not boxes.
have_font() { fc-list 2>/dev/null | grep -qi "wqy\|noto.*cjk"; }
if [[ -x /usr/bin/chromium ]] && have_font; then exit 0; fi
echo "installing Debian's chromium and a CJK font for the browser tests..."
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
/usr/bin/chromium --version
