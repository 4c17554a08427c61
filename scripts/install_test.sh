#!/usr/bin/env bash
# Installs the .deb that scripts/package.sh builds and checks it as a user would meet it,
# then removes it and checks nothing it installed is left. Needs root (apt-get, dpkg).
#
# 1. builds dist/*.deb and dist/*.rpm (PRISM_PACKAGE_PROFILE picks the cargo profile);
# 2. the .rpm holds the same files as the .deb (zsh completions aside: each distro's dir);
# 3. `apt-get install ./dist/<pkg>.deb`; `prism --version`, `prism ops`, `prism process` on
#    a generated image; man pages, completions, desktop entry, icons in place;
# 4. the installed `prism-app` opens its window under Xvfb (title seen by the X server);
# 5. `apt-get remove --purge`: no file from `dpkg -L` is left.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "install_test: needs root (installs and removes a package)" >&2
  exit 1
fi

step() { echo "install_test: $*"; }
fail() {
  echo "install_test: FAIL: $*" >&2
  exit 1
}

T0=$SECONDS
scripts/package.sh
step "packages built in $((SECONDS - T0)) s"

shopt -s nullglob
debs=(dist/*.deb)
rpms=(dist/*.rpm)
[ ${#debs[@]} = 1 ] || fail "expected one .deb in dist/, found ${#debs[@]}"
[ ${#rpms[@]} = 1 ] || fail "expected one .rpm in dist/, found ${#rpms[@]}"
DEB="$ROOT/${debs[0]}"
RPM="$ROOT/${rpms[0]}"
PKG=$(dpkg-deb -f "$DEB" Package)
VERSION=$(dpkg-deb -f "$DEB" Version)
step "$PKG $VERSION: $(du -k "$DEB" | cut -f1) KiB .deb, $(du -k "$RPM" | cut -f1) KiB .rpm," \
  "$(dpkg-deb -f "$DEB" Installed-Size) KiB installed"

WORK=$(mktemp -d)
XVFB_PID=""
APP_PID=""
cleanup() {
  [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null || true
  [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- The .rpm's files are the .deb's -------------------------------------------------
# Regular files and symlinks only (directories are owned differently by each format).
dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ { sub(/^\.?\/?/, "/", $6); print $6 }' | sort >"$WORK/deb.files"
rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$RPM" 2>/dev/null |
  awk '$1 !~ /^d/ { print $2 }' |
  sed 's#^/usr/share/zsh/site-functions/#/usr/share/zsh/vendor-completions/#' |
  sort >"$WORK/rpm.files"
if ! diff -u "$WORK/deb.files" "$WORK/rpm.files"; then
  fail "the .rpm's files differ from the .deb's (above: - only in .deb, + only in .rpm)"
fi
step "the .rpm holds the same $(wc -l <"$WORK/deb.files") files as the .deb"

# Every file the packages must hold.
for f in /usr/bin/prism-app /usr/bin/prism /usr/share/applications/Prism.desktop \
  /usr/share/man/man1/prism.1.gz /usr/share/man/man1/prism-process.1.gz \
  /usr/share/man/man1/prism-ops.1.gz /usr/share/man/man1/prism-node.1.gz \
  /usr/share/bash-completion/completions/prism /usr/share/zsh/vendor-completions/_prism \
  /usr/share/fish/vendor_completions.d/prism.fish; do
  grep -qx "$f" "$WORK/deb.files" || fail "$f is not in the .deb"
done
for size in 32 48 64 128 256 512; do
  f="/usr/share/icons/hicolor/${size}x${size}/apps/prism-app.png"
  grep -qx "$f" "$WORK/deb.files" || fail "$f is not in the .deb"
done

# --- Install -------------------------------------------------------------------------
if dpkg -s "$PKG" >/dev/null 2>&1; then
  step "$PKG is installed already (an earlier run?): removing it first"
  DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y -qq "$PKG" >/dev/null
fi
# Directories of the package that exist already: they stay after removal.
dpkg-deb -c "$DEB" | awk '$1 ~ /^d/ { sub(/^\.?\/?/, "/", $6); sub(/\/$/, "", $6); print $6 }' |
  while read -r d; do [ -d "$d" ] && echo "$d"; done >"$WORK/dirs.before" || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$DEB" >/dev/null
grep -q '^Status: install ok installed' <<<"$(dpkg -s "$PKG")" || fail "$PKG did not install"
dpkg -L "$PKG" >"$WORK/installed"
step "installed $PKG ($(wc -l <"$WORK/installed") paths)"

# --- The CLI -------------------------------------------------------------------------
[ "$(command -v prism)" = /usr/bin/prism ] || fail "prism is not /usr/bin/prism on the PATH"
[ "$(command -v prism-app)" = /usr/bin/prism-app ] || fail "prism-app is not on the PATH"
[ "$(prism --version)" = "prism ${VERSION%%-*}" ] || fail "prism --version: $(prism --version)"
# Outputs are read whole before grep: `grep -q` stopping early would SIGPIPE the writer,
# and pipefail would count that as a failure.
OPS=$(prism ops)
grep -q '^edge-detection' <<<"$OPS" || fail "prism ops does not list edge-detection"
# A 64x48 RGB gradient PNG, from the standard library.
python3 - "$WORK/in.png" <<'EOF'
import struct, sys, zlib
w, h = 64, 48
raw = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 4, y * 5, (x * y) % 256)) for y in range(h))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
EOF
prism process --json --op histogram-equalization --op edge-detection --out "$WORK/out" "$WORK/in.png" \
  >"$WORK/process.log" || fail "prism process failed: $(cat "$WORK/process.log")"
[ -s "$WORK/out/in.png" ] || fail "prism process wrote no $WORK/out/in.png: $(ls "$WORK/out")"
step "prism --version, prism ops and prism process work from the PATH"

# --- Man pages, completions, desktop entry, icons --------------------------------------
PAGE=$(MANPAGER=cat MANWIDTH=80 man prism 2>&1) || fail "man prism: $PAGE"
grep -q 'prism-process' <<<"$PAGE" || fail "man prism does not show the page: $PAGE"
MANPAGER=cat man prism-process >/dev/null 2>&1 || fail "man prism-process does not work"
bash -c 'source /usr/share/bash-completion/completions/prism && complete -p prism' >/dev/null ||
  fail "the bash completion does not register for prism"
desktop-file-validate /usr/share/applications/Prism.desktop || fail "the desktop entry is invalid"
grep -qx 'Exec=prism-app %F' /usr/share/applications/Prism.desktop || fail "desktop entry: Exec"
grep -qx 'MimeType=image/jpeg;image/png;image/webp;image/tiff;image/bmp;' \
  /usr/share/applications/Prism.desktop || fail "desktop entry: MimeType"
for size in 32 48 64 128 256 512; do
  f="/usr/share/icons/hicolor/${size}x${size}/apps/prism-app.png"
  grep -q "PNG image data, $size x $size, 8-bit/color RGBA" <<<"$(file "$f")" || fail "$f: $(file "$f")"
done
step "man pages, completions, desktop entry and icons are in place"

# --- The installed app opens its window ------------------------------------------------
# Own home and runtime dirs: the app writes settings and a cache there.
export HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/run"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
exec {dfd}<> <(:)
Xvfb -displayfd "$dfd" -screen 0 1600x1000x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
read -r -t 20 -u "$dfd" DISP || fail "Xvfb did not start: $(cat "$WORK/xvfb.log")"
exec {dfd}<&-
export DISPLAY=":$DISP"
# The image on the command line, as a file manager's "Open with Prism" passes it.
prism-app "$WORK/in.png" >"$WORK/app.log" 2>&1 &
APP_PID=$!
WIN=""
for _ in $(seq 1 120); do
  WIN=$(xdotool search --onlyvisible --name '^Prism$' 2>/dev/null | head -1) && [ -n "$WIN" ] && break
  kill -0 "$APP_PID" 2>/dev/null || fail "prism-app exited: $(cat "$WORK/app.log")"
  sleep 0.5
done
[ -n "$WIN" ] || fail "no window titled Prism after 60 s: $(xwininfo -root -tree | head -30)"
GEOM=$(xdotool getwindowgeometry "$WIN" | awk '/Geometry/ { print $2 }')
CLASS=$(xprop -id "$WIN" WM_CLASS 2>/dev/null || true)
# The window's icon is Prism's (the 128 px PNG, the first in bundle.icon).
ICON=$(xprop -id "$WIN" _NET_WM_ICON 2>&1 || true)
grep -q 'Icon (128 x 128)' <<<"$ICON" || fail "the window has no 128x128 icon: ${ICON:0:200}"
step "the installed prism-app opened window $WIN titled Prism ($GEOM, $CLASS, 128x128 icon)"
kill "$APP_PID"
wait "$APP_PID" 2>/dev/null || true
APP_PID=""
kill "$XVFB_PID"
wait "$XVFB_PID" 2>/dev/null || true
XVFB_PID=""

# --- Remove: nothing is left -----------------------------------------------------------
DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y -qq "$PKG" >/dev/null
dpkg -s "$PKG" >/dev/null 2>&1 && fail "$PKG is still known to dpkg after purge"
left=()
while read -r path; do
  # Files and links must go, and so must directories the package created, unless
  # another package (a dependency installed with it) owns them too.
  if [ -L "$path" ] || [ -f "$path" ]; then
    left+=("$path")
  elif [ -d "$path" ] && ! grep -qxF "$path" "$WORK/dirs.before" &&
    ! dpkg -S "$path" >/dev/null 2>&1; then
    left+=("$path/")
  fi
done <"$WORK/installed"
[ ${#left[@]} = 0 ] || fail "left after purge: ${left[*]}"
step "apt-get remove --purge left none of the $(wc -l <"$WORK/installed") installed paths"
step "passed in $((SECONDS - T0)) s"
