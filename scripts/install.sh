#!/usr/bin/env bash
# Installs what the appliance needs on Debian/Ubuntu (run as root): Debian packages in one apt
# call, uv, and the locked Python environment in .venv. Idempotent: a second run is quick.
#   scripts/install.sh            runtime only
#   scripts/install.sh --dev      also what the test suite needs (Swift for S3, test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

# The fonts: appliance/engines/__init__.py's LAYOUT_FONTS (what a worker host installs too).
RUNTIME_PKGS=(postgresql redis-server ca-certificates python3 python3-venv curl bubblewrap util-linux
              pandoc ffmpeg librsvg2-bin libreoffice-writer-nogui libreoffice-calc-nogui
              libreoffice-impress-nogui python3-uno
              fonts-dejavu-core fonts-liberation2 fonts-crosextra-carlito fonts-crosextra-caladea
              fonts-noto-core fonts-noto-cjk fonts-urw-base35
              ghostscript calibre tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd ocrmypdf
              clamav-daemon chromium)
DEV_PKGS=(swift swift-proxy swift-object swift-container swift-account memcached wrk
          mmdebstrap systemd-container socat iproute2 iptables openssh-client apt-cacher-ng
          prometheus prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter
          prometheus-nginx-exporter nginx-light nftables openssl pgbackrest stunnel4 poppler-utils)

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

# Virus signatures for the clamd `appliance up` starts (it refuses to run without them): fetched
# once here if there are none; Debian's clamav-freshclam service keeps them current. Without a
# way out to ClamAV's mirrors, set APPLIANCE_VIRUS_SCAN=off (files are then not scanned).
if [[ $DEV == 0 && $(id -u) == 0 ]] && ! compgen -G "/var/lib/clamav/*.c[lv]d" >/dev/null; then
    freshclam --quiet \
        || echo "install.sh: freshclam could not fetch ClamAV signatures; run \`freshclam\`" \
                "again, or set APPLIANCE_VIRUS_SCAN=off" >&2
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
echo "install.sh: ready (.venv)"

# As root, `appliance up` runs as the service user, which must be able to read the code and
# run its Python. A checkout under /root (0700), or a Python from pyenv there, is closed to
# it: then the locked dependencies and this checkout's package go into a copy other users can
# read, $RUNTIME_DIR (/opt/appliance), on Debian's Python, and scripts/run starts that copy.
# (Not for --dev: the tests start the appliance on an environment of their own.)
RUNTIME_DIR=${APPLIANCE_RUNTIME_DIR:-/opt/appliance}
if [[ $(id -u) == 0 && $DEV == 0 ]]; then
    if runuser -u "$SERVICE_USER" -- .venv/bin/python -c 'import appliance' 2>/dev/null; then
        rm -f .runtime  # the service user runs this checkout's .venv
    else
        SYSTEM_PY=/usr/bin/python3
        "$SYSTEM_PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            echo "install.sh: $SERVICE_USER cannot read .venv and $SYSTEM_PY is older than 3.11" >&2
            exit 1
        }
        mkdir -p "$RUNTIME_DIR" && chmod 755 "$RUNTIME_DIR"
        [[ -x $RUNTIME_DIR/venv/bin/python ]] || "$UV" venv -q --python "$SYSTEM_PY" "$RUNTIME_DIR/venv"
        "$UV" export -q --frozen --no-dev --no-emit-project --no-hashes -o "$RUNTIME_DIR/requirements.txt"
        "$UV" pip install -q --link-mode copy --python "$RUNTIME_DIR/venv/bin/python" \
            -r "$RUNTIME_DIR/requirements.txt"
        "$UV" pip install -q --link-mode copy --reinstall-package appliance --no-deps \
            --python "$RUNTIME_DIR/venv/bin/python" .
        chmod -R a+rX "$RUNTIME_DIR"
        runuser -u "$SERVICE_USER" -- "$RUNTIME_DIR/venv/bin/python" -c 'import appliance' || {
            echo "install.sh: $SERVICE_USER cannot run $RUNTIME_DIR either" >&2
            exit 1
        }
        echo "$RUNTIME_DIR/venv" > .runtime
        echo "install.sh: ready ($RUNTIME_DIR/venv, for $SERVICE_USER: it cannot read .venv)"
    fi
fi
