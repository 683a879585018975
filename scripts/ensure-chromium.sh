#!/usr/bin/env bash
# Make sure Debian's `chromium` is on PATH for the report's browser test (tests/alpha/
# test_report.py): installs it with apt when it is missing and apt is usable (CI runs as root on
# a clean machine). It never fails the build itself: without a browser that one test is skipped
# and says why, except under CI (CI=true), where the test fails instead.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: chromium is missing and apt-get is not usable here (not root?);" \
       "the browser test will be skipped: install it with 'apt-get install -y chromium'" >&2
  exit 0
fi
echo "ensure-chromium: installing Debian's chromium (once per machine)..." >&2
export DEBIAN_FRONTEND=noninteractive
lock="-o DPkg::Lock::Timeout=600"
if ! { apt-get $lock install -y -qq --no-install-recommends chromium \
       || { apt-get $lock update -qq && apt-get $lock install -y -qq --no-install-recommends chromium; }; \
     } >/tmp/ensure-chromium.log 2>&1; then
  echo "ensure-chromium: 'apt-get install -y chromium' failed (see /tmp/ensure-chromium.log);" \
       "the browser test will be skipped" >&2
fi
exit 0
