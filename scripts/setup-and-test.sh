#!/usr/bin/env bash
# A fresh Debian/Ubuntu machine to a full test run: system packages, a virtual environment with
# every extra, the PulseAudio virtual microphone, then pytest. The README's test command and
# .ci/run both call this script.
#
#   bash scripts/setup-and-test.sh                 # everything, then `python -m pytest -q`
#   bash scripts/setup-and-test.sh tests/cli/test_cli.py -x   # arguments go to pytest
#
# System packages are installed with apt-get when run as root; otherwise the script names the
# missing ones, prints the command to install them, and stops. An active virtual environment is
# used as it is; otherwise .venv (or $NEUROEAR_VENV) is created or reused.
set -euo pipefail
cd "$(dirname "$0")/.."

# FluidSynth + the small TimGM6mb + csound SoundFonts (the held-out family) for the render/train tests,
# PortAudio for PyAudio, PulseAudio for the virtual microphone the live tests listen to, tmux for the
# dashboard test, Chromium + its driver for the web page's browser tests, python3-venv for the environment.
APT_PACKAGES=(
  python3-venv python3-dev fluidsynth libfluidsynth3 timgm6mb-soundfont csound-soundfont libsndfile1
  portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins tmux procps chromium chromium-driver
)
say() { echo "setup-and-test: $*" >&2; }

if command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if [[ "$(id -u)" == 0 ]]; then
      say "installing system packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      say "missing system packages: ${missing[*]}"
      say "install them as root, then run this script again:"
      say "  sudo apt-get install --no-install-recommends ${missing[*]}"
      exit 1
    fi
  fi
else
  say "no dpkg here (not Debian/Ubuntu): make sure these are installed: ${APT_PACKAGES[*]}"
fi

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  venv="${NEUROEAR_VENV:-.venv}"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
fi
python -m pip install -q --upgrade pip
# torch is pinned so that pip takes the CPU wheel (add --extra-index-url https://download.pytorch.org/whl/cpu
# through $PIP_EXTRA_INDEX_URL where the default index offers only the CUDA build).
python -m pip install -q torch==2.13.0 -e '.[cpu,plot,live,train,bench,archive,web,test]'

# The live tests listen to this microphone (they start it themselves too, and skip without PulseAudio).
bash stream/virtual-mic.sh start >/dev/null || say "virtual microphone unavailable: the audio tests will skip"

if (($#)); then
  exec python -m pytest "$@"
fi
exec python -m pytest -q
