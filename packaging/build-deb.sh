#!/bin/sh
# Builds dist/ods-keyguard_VERSION_ARCH.deb from a staged tree with
# dpkg-deb: nothing is downloaded beyond Go modules. DIST names the output
# folder (default ./dist); the staging is a temporary folder.
set -eu
cd "$(dirname "$0")/.."
DIST=${DIST:-dist}
GO=${GO:-go}
base=$(cat packaging/VERSION)
if git rev-parse --short=12 HEAD >/dev/null 2>&1; then
	stamp=$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S)
	version="$base+git$stamp.$(git rev-parse --short=12 HEAD)"
else
	version=$base
fi
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root

install -d -m 0755 "$root/DEBIAN" "$root/usr/sbin" "$root/usr/lib/nagios/plugins" \
	"$root/etc/nagios-plugins/config" "$root/usr/share/icinga2/include/plugins-contrib.d" \
	"$root/usr/share/man/man8" "$root/usr/share/bash-completion/completions" \
	"$root/lib/systemd/system" "$root/usr/share/doc/ods-keyguard/examples"

CGO_ENABLED=1 $GO build -trimpath -buildvcs=auto -buildmode=pie -ldflags "-s -w" -o "$root/usr/sbin/ods-keyguard" .
chmod 0755 "$root/usr/sbin/ods-keyguard"
ln -s ods-keyguard "$root/usr/sbin/ods-keyguard-ds-submit"
ln -s ods-keyguard "$root/usr/sbin/ods-keyguard-ds-retract"
ln -s ../../../sbin/ods-keyguard "$root/usr/lib/nagios/plugins/check_ods_keyguard"

"$root/usr/sbin/ods-keyguard" __manpage | gzip -9n > "$root/usr/share/man/man8/ods-keyguard.8.gz"
ln -s ods-keyguard.8.gz "$root/usr/share/man/man8/ods-keyguard-ds-submit.8.gz"
ln -s ods-keyguard.8.gz "$root/usr/share/man/man8/ods-keyguard-ds-retract.8.gz"

install -m 0644 packaging/nagios-ods-keyguard.cfg "$root/etc/nagios-plugins/config/ods-keyguard.cfg"
install -m 0644 packaging/icinga2-ods-keyguard.conf "$root/usr/share/icinga2/include/plugins-contrib.d/ods-keyguard.conf"
install -m 0644 packaging/bash-completion "$root/usr/share/bash-completion/completions/ods-keyguard"
install -m 0644 packaging/ods-keyguard-textfile.service packaging/ods-keyguard-textfile.timer "$root/lib/systemd/system/"
install -m 0644 conf.toml.example "$root/usr/share/doc/ods-keyguard/examples/keyguard.toml"
install -m 0644 packaging/ods-keyguard.rules.yml "$root/usr/share/doc/ods-keyguard/examples/ods-keyguard.rules.yml"
install -m 0644 packaging/copyright "$root/usr/share/doc/ods-keyguard/copyright"
# The JSON Schemas of the --json documents: an interface, documented.
install -d "$root/usr/share/doc/ods-keyguard/schema"
install -m 0644 schema/*.json "$root/usr/share/doc/ods-keyguard/schema/"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d @"$(git log -1 --format=%ct 2>/dev/null || date +%s)")/" \
	packaging/changelog.in | gzip -9n > "$root/usr/share/doc/ods-keyguard/changelog.gz"

install -m 0755 packaging/postinst "$root/DEBIAN/postinst"
echo /etc/nagios-plugins/config/ods-keyguard.cfg > "$root/DEBIAN/conffiles"
size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
sed "s/@VERSION@/$version/; s/@ARCH@/$arch/; s/@SIZE@/$size/" packaging/control.in > "$root/DEBIAN/control"

mkdir -p "$DIST"
out="$DIST/ods-keyguard_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
