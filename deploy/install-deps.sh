#!/usr/bin/env bash
# Install every system package pdkv needs on Debian 12 (bookworm). Idempotent: when all
# packages are already installed it touches nothing (no apt-get at all), so re-runs are
# fast. Run as root, or as a user with sudo.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    libucx-dev ucx-utils
    libzmq3-dev libmsgpack-dev
    libcriterion-dev libxxhash-dev libyaml-dev libsodium-dev
    libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev curl
    libpcre2-dev libicu-dev xz-utils
    gnuplot-nox iproute2 iptables python3
    libopenblas-dev
    clang libclang-rt-14-dev
    slurm-wlm munge
)

if ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

# The JavaScript reference implementations and SDK clients that tests compare against
# live in tests/js/<name>/ with a package.json and a package-lock.json each; they are
# installed with `npm ci` (exact versions from the lock file) when node_modules is older
# than the lock file. Node.js comes from Debian when no node is on the PATH.
install_js() {
    local lock dir
    for lock in "$(dirname "$0")"/../tests/js/*/package-lock.json; do
        [[ -f "$lock" ]] || continue
        dir=$(dirname "$lock")
        if [[ -d "$dir/node_modules" && "$dir/node_modules" -nt "$lock" ]]; then
            continue
        fi
        echo "install-deps: npm ci in ${dir#*/../}"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) && touch "$dir/node_modules"
    done
}

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PACKAGES[@]} packages already installed"
    install_js
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-deps: missing packages: ${missing[*]}" >&2
        echo "install-deps: run this script as root (or install sudo)" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
install_js
