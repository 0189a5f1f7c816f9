#!/bin/sh
# Installs what ods-keyguard's demo and tests need on Debian: SoftHSMv2,
# OpenDNSSEC's enforcer, pkcs11-tool and sqlite3. Does nothing when they are
# there already.
set -eu
need=""
command -v softhsm2-util >/dev/null 2>&1 || need="$need softhsm2"
command -v ods-enforcerd >/dev/null 2>&1 || need="$need opendnssec"
command -v pkcs11-tool >/dev/null 2>&1 || need="$need opensc"
command -v sqlite3 >/dev/null 2>&1 || need="$need sqlite3"
[ -n "$need" ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "setup: missing Debian packages:$need (run as root, or: sudo apt-get install$need)" >&2
	exit 1
fi
echo "setup: installing$need"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
# The package starts nothing that the sandbox needs; a system enforcer, if
# any, is left alone: the tests use their own folders and sockets.
