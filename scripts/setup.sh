#!/bin/sh
# Installs what ods-keyguard's demo and tests need on Debian bookworm: the
# real parts the tests start (SoftHSMv2, NSS softoken, openCryptoki,
# OpenDNSSEC's enforcer, BIND as a parent, MariaDB and a Galera cluster of
# it, Nagios Core) and the tools they check with (pkcs11-tool, sqlite3,
# dig, lintian, promtool, dpkg-deb, debsums, man, sudo, zone signers and
# validators). Does nothing when they are there already.
set -eu
need=""
want() { command -v "$1" >/dev/null 2>&1 || need="$need $2"; }
want softhsm2-util softhsm2
want ods-enforcerd opendnssec
want pkcs11-tool opensc
want sqlite3 sqlite3
want named bind9
want dig bind9-dnsutils
want delv bind9-dnsutils
# The signer lab: ods-signerd signs the children, in a mount namespace of
# its own (unshare, nsenter).
want ods-signerd opendnssec-signer
want nsenter util-linux
want mariadbd mariadb-server
# The Galera harness: three MariaDB nodes with Debian's galera-4, joined by
# rsync state transfer.
want rsync rsync
[ -e /usr/lib/galera/libgalera_smm.so ] || need="$need galera-4"
want nagios4 nagios4-core
want promtool prometheus
# The zone review (zonereview/): its tests review zones signed by
# dnssec-signzone and ldns-signzone; make bench-review compares it with
# validns, ldns-verify-zone, kzonecheck and dnssec-verify.
want dnssec-signzone bind9-utils
want dnssec-verify bind9-utils
want ldns-signzone ldnsutils
want ldns-verify-zone ldnsutils
want validns validns
want kzonecheck knot-dnssecutils
want lintian lintian
want dpkg-shlibdeps dpkg-dev
want systemd-analyze systemd
# The package test: debsums on the installed package, the man pages through
# man --warnings, check --sudo through a real sudo, the install in a chroot
# (unshare and mount from util-linux and mount, objcopy from binutils).
want debsums debsums
want man man-db
want sudo sudo
want objcopy binutils
# The ceremony's run sheet as a PDF: groff's PDF output (gropdf), with tbl.
want gropdf groff
want unshare util-linux
want mount mount
# Two more PKCS#11 implementations the tests run on: NSS softoken (certutil
# makes its tokens; libsoftokn3 comes with libnss3) through a wrapper module
# the tests build with gcc against p11-kit's PKCS#11 header, and openCryptoki
# (pkcsslotd, pkcsconf), started in a private namespace by the tests.
want certutil libnss3-tools
want pkcsslotd opencryptoki
want gcc gcc
[ -e /usr/include/p11-kit-1/p11-kit/pkcs11.h ] || need="$need libp11-kit-dev"
[ -e /usr/include/dlfcn.h ] || need="$need libc6-dev"
# The MySQL build of the enforcer conflicts with opendnssec; the tests unpack
# it from its .deb, whose client library must be installed.
[ -e /usr/lib/x86_64-linux-gnu/libmariadb.so.3 ] || [ -n "$(ls /usr/lib/*/libmariadb.so.3 2>/dev/null)" ] || need="$need libmariadb3"
# The tests fetch opendnssec-enforcer-mysql with apt-get download, which
# needs the package index.
index=yes
apt-cache show opendnssec-enforcer-mysql >/dev/null 2>&1 || index=no
[ -n "$need" ] || [ "$index" = no ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "setup: missing Debian packages:$need (run as root, or: sudo apt-get update && sudo apt-get install$need)" >&2
	exit 1
fi
apt-get update -qq
if [ -n "$need" ]; then
	echo "setup: installing$need"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# The packages may start system services (named, mariadb, nagios4); the tests
# start their own on free ports in their own folders and leave those alone.
