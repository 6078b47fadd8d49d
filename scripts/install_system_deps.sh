#!/usr/bin/env bash
# Install the system libraries Qt 6 / napari need under a virtual X server (Debian/Ubuntu).
# Only acts when something is missing; needs root (or passwordless sudo) to install.
set -euo pipefail
pkgs=(xvfb xauth libgl1 libegl1 libopengl0 libglx-mesa0 libegl-mesa0 libgl1-mesa-dri
      libxkbcommon0 libxkbcommon-x11-0 libxcb1 libx11-xcb1 libxcb-cursor0 libxcb-icccm4
      libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-shape0
      libxcb-xfixes0 libxcb-xkb1 libxcb-shm0 libxcb-sync1 libxcb-render0 libxcb-glx0
      libxcb-xinerama0 libfontconfig1 libfreetype6 libdbus-1-3 libglib2.0-0)
command -v dpkg-query >/dev/null || { echo "not a Debian system: install Xvfb and Qt's xcb libraries yourself"; exit 0; }
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "WARNING: missing system packages (need root): ${missing[*]}" >&2; exit 0; fi
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
