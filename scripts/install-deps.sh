#!/usr/bin/env bash
# Installs what building and testing Tessera needs on a fresh Debian machine with Rust, gcc and
# Python: libclang (for the rocksdb crate), the S3 clients the tests drive (aws CLI, rclone, the
# AWS SDK for JavaScript with Node and npm), a headless browser (Chromium) and a Python venv.
#   scripts/install-deps.sh build   # only what `cargo build` needs
#   scripts/install-deps.sh test    # everything the test suite needs (default)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"

apt_packages=(clang libclang-dev)
if [ "$what" = test ]; then
  # chromium: the browser upload test submits a real HTML form, and the console test drives the
  # console in it. prometheus: the metrics test scrapes a dev cluster with it.
  apt_packages+=(awscli openssl rclone chromium prometheus)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and npm may come from another package (NodeSource's nodejs bundles npm): only the commands
# matter.
if [ "$what" = test ] && ! { command -v node && command -v npm; } >/dev/null; then
  missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing apt packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$what" = test ]; then
  # boto3 and the pip aws CLI (v1) are current releases: their botocore sends CRC32 checksums by
  # default, as a header over http and as an aws-chunked trailer over https.
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  # playwright drives Debian's chromium for the console test (no browser download: it is given
  # the executable).
  .venv/bin/pip install -q --disable-pip-version-check --upgrade boto3 awscli pytest playwright
  # The JavaScript SDK at the versions package-lock.json pins (tests/clients/test_js_presigned.py).
  if [ ! -d tests/clients/js/node_modules ]; then
    (cd tests/clients/js && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
