#!/usr/bin/env bash
# Renders Prism's icon, icons/prism.svg, into the PNG sizes the window, the desktop entry
# and the packages use (8-bit RGBA, one per hicolor size). Run it after editing the SVG
# and commit the PNGs: building the app reads them (tauri.conf.json bundle.icon).
# Installs rsvg-convert (librsvg2-bin) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rsvg-convert >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "icons: installing librsvg2-bin"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq librsvg2-bin >/dev/null
fi

# The sizes listed in src-tauri/tauri.conf.json bundle.icon; icon.png is the 512 one.
for size in 32 48 64 128 256 512; do
  out="icons/${size}x${size}.png"
  [ "$size" = 512 ] && out="icons/icon.png"
  rsvg-convert --width "$size" --height "$size" --format png icons/prism.svg --output "$out"
  # Color type 6 (byte 25 of the PNG) is RGBA; Tauri refuses anything else.
  if [ "$(od -An -tu1 -j25 -N1 "$out" | tr -d ' ')" != 6 ]; then
    echo "icons: $out is not RGBA" >&2
    exit 1
  fi
  echo "icons: wrote $out"
done
