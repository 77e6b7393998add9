#!/usr/bin/env bash
# Installs what keybroker needs to build and test: Debian packages and Python modules.
# As root it installs what is missing; otherwise it prints the exact command and fails.
set -euo pipefail

debian_packages=(
  build-essential pkg-config libssl-dev libcurl4-openssl-dev libsystemd-dev
  mariadb-server mariadb-client mariadb-backup mariadb-test libmariadbd-dev
  galera-4 socat iproute2
  selinux-policy-dev policycoreutils checkpolicy semodule-utils
  selinux-policy-default setools strace
  systemd util-linux procps sysbench xxd
  prometheus
  debhelper lintian scdoc rpm debootstrap
)
# pykmip: the KMIP server the kmip provider is tested against (pykmip-server, SQLite store).
# Its crypto engine imports ciphers that cryptography 49 removes from their old places.
python_modules=(pytest moto botocore boto3 flask flask_cors kmip)
python_packages=(pytest "moto[server]" botocore boto3 "pykmip==0.11.0" "cryptography<49")

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
py_missing=0
for m in "${python_modules[@]}"; do
  python3 -c "import $m" 2>/dev/null || py_missing=1
done
command -v swift >/dev/null || { echo "deps: swift not found on PATH (expected /opt/swift/usr/bin)" >&2; exit 1; }

if [ ${#missing[@]} -eq 0 ] && [ $py_missing -eq 0 ]; then
  exit 0
fi
apt_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
pip_cmd="python3 -m pip install ${python_packages[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages; run as root:" >&2
  [ ${#missing[@]} -gt 0 ] && echo "  $apt_cmd" >&2
  [ $py_missing -ne 0 ] && echo "  $pip_cmd" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  # mariadb-server's maintainer scripts try to start the service; there is no init here to do it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $py_missing -ne 0 ]; then
  echo "deps: installing Python packages ${python_packages[*]}"
  python3 -m pip install -q "${python_packages[@]}"
fi
