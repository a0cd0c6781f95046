#!/usr/bin/env bash
# Installs the Debian tools that the test-suite drives for real, if they are missing.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# the live page is tested in a real browser (selenium drives Debian's chromium through chromedriver)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# tests/support/privileges.py drops root to nobody for the permission tests
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# the fleet store is tested on a real PostgreSQL cluster started by the suite (tests/support/postgres.py)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
# credentials profiles are tested against a real Secret Service (GNOME Keyring on a private bus)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v dbus-send >/dev/null 2>&1 || need+=(dbus-bin)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
# `notaryd completion` is tried in each shell it supports; `make man`'s page is rendered by man
command -v fish >/dev/null 2>&1 || need+=(fish)
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v man >/dev/null 2>&1 || need+=(man-db)
# the README's `pipx install` line is tried by the suite
command -v pipx >/dev/null 2>&1 || need+=(pipx)
# tests/deploy/mdwe_probe.py loads libseccomp (systemd depends on it; listed for minimal images)
ldconfig -p 2>/dev/null | grep 'libseccomp\.so\.2' >/dev/null || need+=(libseccomp2)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${need[*]}; run 'sudo apt-get install ${need[*]}' (tests needing them will fail)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
