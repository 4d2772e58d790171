#!/usr/bin/env bash
# Installs the Debian packages beeorm needs, when any is missing. Idempotent; silent
# when everything is present. Needs root (or sudo) only when something must be installed.
set -euo pipefail
PACKAGES=(build-essential cmake pkg-config lua5.4 liblua5.4-dev libhiredis-dev libmariadb-dev
  mariadb-server mariadb-client redis-server redis-tools lua-busted libyaml-dev libmsgpack-dev luarocks
  lua-sql-mysql lua-redis lua-socket lua-system libmicrohttpd-dev curl
  gnuplot-nox chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "beeorm deps: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "beeorm deps: missing packages and not root. Run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
${SUDO:-} apt-get update -qq >/dev/null
${SUDO:-} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "beeorm deps: done"
