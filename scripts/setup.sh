#!/usr/bin/env bash
# Installs what building and testing Prism needs, skipping whatever is already there.
# Idempotent: safe to run on every build (CI runs it on a fresh machine).
set -euo pipefail

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
