#!/usr/bin/env bash
# setup-deps.sh — install the Debian packages regrad needs to build and run its demo, and
# with --test also what the tests use: cmocka, clang's libFuzzer, xmllint and headless
# Chromium (the HTML report is rendered for real).  Installs only what is missing; needs
# root (or sudo) when something is.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev zlib1g-dev libcjson-dev
      libjpeg62-turbo-dev libpng-dev libhdf5-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev
      dataset-fashion-mnist)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(libcmocka-dev clang libclang-rt-14-dev libxml2-utils chromium libopenmpi-dev openmpi-bin
         python3-h5py python3-numpy python3-onnx)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
