#!/usr/bin/env bash
# Installs what the appliance needs on Debian/Ubuntu (run as root): Debian packages in one apt
# call, uv, and the locked Python environment in .venv. Idempotent: a second run is quick.
#   scripts/install.sh            runtime only
#   scripts/install.sh --dev      also what the test suite needs (Swift for S3, test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

RUNTIME_PKGS=(postgresql redis-server ca-certificates python3 python3-venv curl bubblewrap util-linux
              pandoc ffmpeg librsvg2-bin libreoffice-writer-nogui libreoffice-calc-nogui
              libreoffice-impress-nogui python3-uno fonts-dejavu-core
              ghostscript calibre tesseract-ocr tesseract-ocr-eng)
DEV_PKGS=(swift swift-proxy swift-object swift-container swift-account memcached wrk
          mmdebstrap systemd-container socat iproute2 iptables openssh-client apt-cacher-ng
          prometheus prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter
          prometheus-nginx-exporter nginx-light nftables openssl)

need=()
for pkg in "${RUNTIME_PKGS[@]}" $([[ $DEV == 1 ]] && echo "${DEV_PKGS[@]}"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || need+=("$pkg")
done
if ((${#need[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "install.sh: missing Debian packages (${need[*]}); run as root" >&2
        exit 1
    fi
    echo "install.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Waits for another apt run (a parallel install.sh) instead of failing on its lock.
    APT=(apt-get -o DPkg::Lock::Timeout=900)
    "${APT[@]}" update -qq
    # policy-rc.d keeps package scripts from starting system-wide services we do not use.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    "${APT[@]}" install -y -qq --no-install-recommends "${need[@]}"
fi

# `appliance up` started as root runs everything as this unprivileged user (it would create
# it too); its home is the default data directory.
SERVICE_USER=${APPLIANCE_SERVICE_USER:-appliance}
if [[ $(id -u) == 0 ]] && ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/appliance --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install.sh: Python >= 3.11 is needed ($PY is $("$PY" --version 2>&1))" >&2
    exit 1
fi

# uv from PyPI into a private tool venv (Debian's pip refuses system-wide installs).
UV=.tools/bin/uv
if [[ ! -x $UV ]]; then
    "$PY" -m venv .tools
    .tools/bin/pip install -q "uv>=0.9,<1"
fi

if [[ $DEV == 1 ]]; then
    "$UV" sync --frozen --all-extras --python "$PY" -q
else
    "$UV" sync --frozen --no-dev --python "$PY" -q
fi
if [[ $(id -u) == 0 ]] && ! runuser -u "$SERVICE_USER" -- .venv/bin/python -c '' 2>/dev/null; then
    echo "install.sh: warning: $SERVICE_USER cannot run .venv/bin/python (a directory on its way," \
         "e.g. /root, is closed to it), so \`appliance up\` as root will refuse to start; use a" \
         "checkout and a Python other users can read (e.g. under /opt, PYTHON=/usr/bin/python3)" >&2
fi
echo "install.sh: ready (.venv)"
