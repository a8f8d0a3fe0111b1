#!/usr/bin/env bash
# Create .venv and install qa into it. `--test` adds the test tools, the optional backends' packages
# (Milvus Lite, Ray) and Debian's Chromium.
#
# torch goes in first, pinned to the CPU build (torch==2.13.0): once it is installed,
# sentence-transformers' own torch requirement is met and pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: qa needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q "torch==2.13.0"
if [ "${1:-}" = "--test" ]; then
    "${pip[@]}" install -q -e ".[test,milvus,ray]"
    if [ ! -x /usr/bin/chromium ]; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
    fi
else
    "${pip[@]}" install -q -e .
fi
