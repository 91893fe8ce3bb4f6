#!/usr/bin/env bash
# What the test suite needs beyond `pip install -r requirements.txt` (README "Quick start"):
# the optional extras it covers and the browser it plays videos in. Run once: bash tests/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
# metamusic[ray] (README "Many GPUs and machines"), with its dependencies.
pip install -r requirements-ray.txt
# metamusic[studio] (README "Studio"): Gradio and its dependencies, each pinned, installed WITHOUT
# dependencies so that Gradio's pillow<13 requirement does not downgrade the pinned pillow.
pip install --no-deps -r requirements-studio.txt
# Headless Chromium for the playback tests (Debian's package; Playwright never downloads a browser).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update && apt-get install -y chromium
  else
    echo "tests/install.sh: install Debian's chromium (sudo apt-get install -y chromium) for the browser tests;" \
         "without it they are skipped" >&2
  fi
fi
# Test-only references and extras pinned with their missing dependencies, installed WITHOUT
# dependencies (taming-transformers-rom1504 declares pytorch-lightning, which MetaMusic never needs).
pip install --no-deps -r requirements-test.txt
