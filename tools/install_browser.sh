#!/usr/bin/env bash
# Install the headless browser the end-to-end test drives (tests/test_browser.py, issue 8):
# Debian's chromium and chromium-driver. Playwright (a Python package in the dev extra) never downloads a
# browser of its own here; the test launches /usr/bin/chromium.
# Idempotent: does nothing when /usr/bin/chromium is already there. Uses sudo when not run as root.
set -euo pipefail

CHROMIUM=${TLCOURSE_CHROMIUM:-/usr/bin/chromium}

# One install at a time: .ci/run starts this script in the background while pip installs the course, and the
# README's test command runs it again; the second call waits here, then finds Chromium installed.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/tlcourse-install-browser.lock"
  flock 9
fi

if [[ -x "$CHROMIUM" ]]; then
  echo "chromium already installed at $CHROMIUM"
else
  if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install_browser.sh: not root and no sudo; install chromium and chromium-driver by hand" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: apt-get not found; install Chromium by hand and set TLCOURSE_CHROMIUM to it" >&2
    exit 1
  fi
  echo "installing chromium and chromium-driver with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver
fi

"$CHROMIUM" --version
if command -v chromedriver >/dev/null 2>&1; then chromedriver --version; fi
python -c "import importlib.metadata as m; print('playwright (python)', m.version('playwright'))" 2>/dev/null \
  || echo "python package playwright not installed (pip install -e '.[dev]')"
