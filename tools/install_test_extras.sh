#!/usr/bin/env bash
# What the test suite needs beyond `pip install -e ".[dev]"` (issue 8):
#  1. Debian's Chromium for the JupyterLab end-to-end test (tools/install_browser.sh);
#  2. ipywidgets 7.7.1 (Colab's version) in a side folder, .test-extras/ipywidgets7, so tests/test_widgets.py can
#     check the upload widget against Colab's FileUpload in a subprocess without replacing the installed ipywidgets 8;
#  3. axe-core from the npm registry, .test-extras/axe-core/axe.min.js, the accessibility checker tests/test_site.py
#     and tests/test_browser.py inject into the course site's pages and the live widget (npm comes with Debian's nodejs; installed with apt-get if missing).
# On a machine where Chromium cannot be installed (no apt-get, no root or sudo) it says so and goes on: the browser
# test then skips with that reason. Under CI (CI set) every step must succeed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! bash tools/install_browser.sh; then
  if [[ -n "${CI:-}" ]]; then
    echo "install_test_extras.sh: CI needs Chromium for tests/test_browser.py" >&2
    exit 1
  fi
  echo "install_test_extras.sh: no Chromium; tests/test_browser.py will skip" >&2
fi

TARGET=.test-extras/ipywidgets7
if [[ ! -f "$TARGET/ipywidgets/__init__.py" ]]; then
  rm -rf "$TARGET"
  python -m pip install -q --no-deps --target "$TARGET" "ipywidgets==7.7.1" "ipython_genutils==0.2.0"
fi
echo "ipywidgets 7.7.1 for the Colab-format widget test: $TARGET"

AXE_VERSION=4.14.1
AXE=.test-extras/axe-core
if [[ ! -f "$AXE/axe.min.js" ]] || ! head -c 40 "$AXE/axe.min.js" | grep -q "axe v$AXE_VERSION"; then
  if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm >/dev/null || true
  fi
  scratch=$(mktemp -d)
  if command -v npm >/dev/null 2>&1 \
    && (cd "$scratch" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar -xzf "axe-core-$AXE_VERSION.tgz"); then
    mkdir -p "$AXE"
    cp "$scratch/package/axe.min.js" "$scratch/package/LICENSE" "$AXE/"
  elif [[ -n "${CI:-}" ]]; then
    echo "install_test_extras.sh: CI needs axe-core (npm pack axe-core@$AXE_VERSION) for tests/test_site.py" >&2
    exit 1
  else
    echo "install_test_extras.sh: could not fetch axe-core with npm; the course site's browser test will skip" >&2
  fi
  rm -rf "$scratch"
fi
if [[ -f "$AXE/axe.min.js" ]]; then echo "axe-core $AXE_VERSION for the course site's browser test: $AXE/axe.min.js"; fi
