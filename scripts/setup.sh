#!/usr/bin/env bash
# Prepare a Debian 12 machine to develop and test Edge Warden. Idempotent and quick when
# everything is already there: it only calls apt-get for packages that are missing, so the
# test command can run it every time. Needs root for apt-get; works without stdin (CI).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }

# Debian packages the tests and the lab need (real peers, not mocks): PostgreSQL server,
# NetFlow exporter and independent decoder, net-snmp agent and CLI tools, gdbm for snmpsim,
# venv for the lab's own Python, Chromium and CJK fonts for UI/PDF tests, pdftotext,
# ip/netns for multi-host tests, tcpdump for captures, pango for WeasyPrint (report PDFs).
PACKAGES=(
    postgresql softflowd nfdump snmp snmpd python3-gdbm python3-venv chromium
    fonts-noto-cjk poppler-utils iproute2 tcpdump
    libpango-1.0-0 libpangoft2-1.0-0
)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        say "missing Debian packages: ${missing[*]}; run this script as root to install them" >&2
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null
    say "Debian packages installed"
else
    say "Debian packages present"
fi

# uv manages the project's Python environment. Prefer an existing uv; otherwise install it with
# pip. Debian's own python3 is "externally managed" (PEP 668) and may lack pip: then put uv in
# a dedicated venv and link it onto PATH.
if ! command -v uv >/dev/null 2>&1; then
    say "installing uv"
    if python3 -m pip --version >/dev/null 2>&1 \
        && python3 -m pip install --quiet --disable-pip-version-check uv </dev/null; then
        hash -r
    fi
    if ! command -v uv >/dev/null 2>&1; then
        venv=/opt/edgewarden-uv
        [[ $(id -u) -eq 0 ]] || venv="$HOME/.local/share/edgewarden-uv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check uv </dev/null
        if [[ $(id -u) -eq 0 ]]; then
            ln -sf "$venv/bin/uv" /usr/local/bin/uv
        else
            mkdir -p "$HOME/.local/bin"
            ln -sf "$venv/bin/uv" "$HOME/.local/bin/uv"
            export PATH="$HOME/.local/bin:$PATH"
        fi
        hash -r
    fi
    command -v uv >/dev/null 2>&1 || { say "uv was installed but is not on PATH" >&2; exit 1; }
fi
say "uv $(uv --version | awk '{print $2}')"

say "syncing the Python environment (uv sync --frozen --all-groups)"
uv sync --frozen --all-groups --quiet </dev/null

# Lab peers whose pins clash with ours get their own venvs (lab/venvs.py): snmpsim on Debian's
# Python (dbm.gnu) and fake-switches. Built once, reused while their spec is unchanged.
say "preparing lab peer environments (snmpsim, fake-switches)"
uv run --frozen --no-sync python - <<'PY'
from lab.fakeswitches import FAKESWITCHES_VENV
from lab.snmp.agents import ensure_snmpsim
from lab.venvs import ensure_venv

ensure_snmpsim()
ensure_venv(FAKESWITCHES_VENV)
PY
say "done"
