#!/usr/bin/env bash
# Create .venv (if missing) and install medssl with its test tools. Idempotent.
# torch==2.14.1 / torchvision==0.29.1 are the builds this project's machines install from
# local disk; elsewhere any torch>=2.4 with its matching torchvision works (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
.venv/bin/python -m pip install -q -e ".[test]"
# The report test renders report.html in Debian's headless Chromium; install it where we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    >/tmp/medssl-apt.log 2>&1 || echo "warning: chromium not installed (see /tmp/medssl-apt.log)"
fi
.venv/bin/python -c "import medssl, torch; print(f'medssl {medssl.__version__} ready (torch {torch.__version__})')"
