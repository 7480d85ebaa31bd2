#!/usr/bin/env bash
# Installs Debian packages, quietly, with sudo when not root; nothing to do
# without packages. Used by setup.sh and bench-setup.sh.
#
#   bash scripts/apt-install.sh LABEL PACKAGE...
set -euo pipefail
label=$1
shift
[ $# -gt 0 ] || exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "$label: installing $*" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
