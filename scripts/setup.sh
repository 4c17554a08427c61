#!/usr/bin/env bash
# Installs what building and testing Prism needs, skipping whatever is already there.
# Idempotent: safe to run on every build (CI runs it on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."

# cmake + nasm build libjpeg-turbo (the JPEG codec OpenCV also uses) for the turbojpeg crate.
APT_PACKAGES=(cmake nasm pkg-config build-essential)
if [ "${PRISM_WITH_APP:-0}" = 1 ]; then
  # The Tauri app and its end-to-end tests (webview, virtual display, WebDriver).
  # dbus + gnome-keyring: a private Secret Service for the tests of token storage.
  APT_PACKAGES+=(libwebkit2gtk-4.1-dev libssl-dev xvfb xauth webkit2gtk-driver dbus gnome-keyring)
  # Packaging (scripts/package.sh) and its install test (scripts/install_test.sh): rpm to
  # read the .rpm, X tools to find the installed app's window, man and desktop-file checks.
  APT_PACKAGES+=(rpm xdotool x11-utils desktop-file-utils man-db file python3)
  # npm fetches the pinned Tauri CLI; a Node.js from elsewhere (nodesource) counts too.
  command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
fi

# deploy/k8s is rendered with `kubectl kustomize` (scripts/check_k8s.sh). The machine
# image may already have a kubectl (the rendering is the same); if not, Debian's has
# kustomize built in.
command -v kubectl >/dev/null || APT_PACKAGES+=(kubernetes-client)
# The venv for the manifests' validator (and tools/setup_venv.sh's OpenCV tools).
python3 -m venv --help >/dev/null 2>&1 || APT_PACKAGES+=(python3 python3-venv)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
    rustup component add "$comp" || echo "setup: could not add $comp (offline?)" >&2
  fi
done

# tauri-driver bridges WebDriver to WebKitWebDriver for the app's end-to-end tests.
TAURI_DRIVER_VERSION=2.1.0
if [ "${PRISM_WITH_APP:-0}" = 1 ]; then
  if ! cargo install --list 2>/dev/null | grep -q "^tauri-driver v$TAURI_DRIVER_VERSION:"; then
    echo "setup: installing tauri-driver $TAURI_DRIVER_VERSION"
    cargo install tauri-driver --version "$TAURI_DRIVER_VERSION" --locked
  fi
fi

# axe-core for the end-to-end test's accessibility audit, from a pinned wheel that
# bundles it (tools/requirements-a11y.txt); without its dependencies: only axe.min.js is used.
if [ "${PRISM_WITH_APP:-0}" = 1 ]; then
  if ! ls .venv/lib/python3*/site-packages/axe_playwright_python/axe.min.js >/dev/null 2>&1; then
    echo "setup: installing axe-core (axe-playwright-python) into .venv"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --no-deps --require-hashes -r tools/requirements-a11y.txt
  fi
fi

# kubernetes-validate checks the rendered manifests offline against the API schemas it
# bundles; pinned with its dependencies in tools/requirements-deploy.txt.
KV_VERSION=$(sed -n 's/^kubernetes-validate==//p' tools/requirements-deploy.txt)
if [ "$(.venv/bin/kubernetes-validate --version 2>/dev/null)" != "$KV_VERSION" ]; then
  echo "setup: installing kubernetes-validate $KV_VERSION into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -r tools/requirements-deploy.txt
fi
