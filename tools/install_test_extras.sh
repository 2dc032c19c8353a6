#!/usr/bin/env bash
# What the test suite needs beyond `pip install -e ".[dev]"` (issue 8):
#  1. Debian's Chromium for the JupyterLab end-to-end test (tools/install_browser.sh);
#  2. ipywidgets 7.7.1 (Colab's version) in a side folder, .test-extras/ipywidgets7, so tests/test_widgets.py can
#     check the upload widget against Colab's FileUpload in a subprocess without replacing the installed ipywidgets 8;
#  3. axe-core (npm), the accessibility checker tests/test_browser.py injects into the page, in .test-extras/axe:
#     installed from the registry here, never fetched while the tests run.
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

AXE=.test-extras/axe
AXE_VERSION=4.14.1
if [[ ! -f "$AXE/node_modules/axe-core/axe.min.js" ]]; then
  if command -v npm > /dev/null; then
    npm install --silent --no-audit --no-fund --prefix "$AXE" "axe-core@$AXE_VERSION"
  elif [[ -n "${CI:-}" ]]; then
    echo "install_test_extras.sh: CI needs npm for axe-core (apt-get install npm)" >&2
    exit 1
  else
    echo "install_test_extras.sh: no npm; the accessibility checks of tests/test_browser.py will skip" >&2
  fi
fi
if [[ -f "$AXE/node_modules/axe-core/axe.min.js" ]]; then
  echo "axe-core $AXE_VERSION for the browser test: $AXE"
fi
