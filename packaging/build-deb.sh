#!/bin/sh
# Builds dist/ods-keyguard_VERSION_ARCH.deb from a staged tree with
# dpkg-deb: nothing is downloaded beyond Go modules. DIST names the output
# folder (default ./dist); the staging is a temporary folder.
set -eu
cd "$(dirname "$0")/.."
DIST=${DIST:-dist}
GO=${GO:-go}
version=$(packaging/version.sh)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root

doc=$root/usr/share/doc/ods-keyguard
install -d -m 0755 "$root/DEBIAN" "$root/usr/sbin" "$root/usr/lib/nagios/plugins" \
	"$root/etc/nagios-plugins/config" "$root/usr/share/icinga2/include/plugins-contrib.d" \
	"$root/usr/share/man/man8" "$root/usr/share/man/man5" "$root/usr/share/bash-completion/completions" \
	"$root/lib/systemd/system" "$doc/examples" "$root/usr/share/lintian/overrides"

# Debian's hardening flags (PIE, RELRO, BIND_NOW, fortify, stack
# protector) for the cgo part and the external link; the version the
# package carries, for --version.
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
export CGO_CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
export CGO_LDFLAGS="$(dpkg-buildflags --get LDFLAGS)"
CGO_ENABLED=1 $GO build -trimpath -buildvcs=auto -buildmode=pie \
	-ldflags "-s -w -linkmode=external -extldflags '$CGO_LDFLAGS' -X main.buildVersion=$version" \
	-o "$root/usr/sbin/ods-keyguard" .
objcopy --remove-section=.comment "$root/usr/sbin/ods-keyguard"
chmod 0755 "$root/usr/sbin/ods-keyguard"
ln -s ods-keyguard "$root/usr/sbin/ods-keyguard-ds-submit"
ln -s ods-keyguard "$root/usr/sbin/ods-keyguard-ds-retract"
ln -s ods-keyguard "$root/usr/sbin/ods-keyguard-publish"
ln -s ../../../sbin/ods-keyguard "$root/usr/lib/nagios/plugins/check_ods_keyguard"

# The man pages, written by hand; the date of the commit built.
date=$(date -u -d @"$(git log -1 --format=%ct 2>/dev/null || date +%s)" +%Y-%m-%d)
for page in ods-keyguard.8 keyguard.toml.5; do
	sed "s/@VERSION@/$version/; s/@DATE@/$date/" "packaging/$page" | gzip -9n > "$root/usr/share/man/man${page##*.}/$page.gz"
done
ln -s ods-keyguard.8.gz "$root/usr/share/man/man8/ods-keyguard-ds-submit.8.gz"
ln -s ods-keyguard.8.gz "$root/usr/share/man/man8/ods-keyguard-ds-retract.8.gz"
ln -s ods-keyguard.8.gz "$root/usr/share/man/man8/ods-keyguard-publish.8.gz"

install -m 0644 packaging/nagios-ods-keyguard.cfg "$root/etc/nagios-plugins/config/ods-keyguard.cfg"
install -m 0644 packaging/icinga2-ods-keyguard.conf "$root/usr/share/icinga2/include/plugins-contrib.d/ods-keyguard.conf"
# Completion of every command and flag, from the program's command tree.
"$root/usr/sbin/ods-keyguard" __bash-completion > "$root/usr/share/bash-completion/completions/ods-keyguard"
chmod 0644 "$root/usr/share/bash-completion/completions/ods-keyguard"
install -m 0644 packaging/ods-keyguard-textfile.service packaging/ods-keyguard-textfile.timer \
	packaging/ods-keyguard-parent-sync.service packaging/ods-keyguard-parent-sync.timer \
	packaging/ods-keyguard-scan.service packaging/ods-keyguard-scan.timer \
	packaging/ods-keyguard-publish-release.service packaging/ods-keyguard-publish-release.timer "$root/lib/systemd/system/"
install -m 0644 conf.toml.example "$doc/examples/keyguard.toml"
install -m 0644 packaging/ods-keyguard.rules.yml "$doc/examples/ods-keyguard.rules.yml"
install -m 0644 packaging/ods-keyguard.rules.test.yml "$doc/examples/ods-keyguard.rules.test.yml"
install -m 0644 packaging/sudoers.example "$doc/examples/sudoers"
install -m 0644 packaging/nrpe.example "$doc/examples/nrpe.cfg"
install -m 0755 packaging/ds-forward-nsupdate "$doc/examples/ds-forward-nsupdate"
install -m 0644 packaging/copyright "$doc/copyright"
# The README the Nagios definitions and the man page point to, the
# operators' pages it links to, and the developers' guide.
install -d "$doc/docs"
for f in README.md CONTRIBUTING.md docs/*.md; do
	gzip -9n < "$f" > "$doc/$f.gz"
	chmod 0644 "$doc/$f.gz"
done
# The JSON Schemas of the --json documents: an interface, documented.
install -d "$doc/schema"
install -m 0644 schema/*.json "$doc/schema/"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d @"$(git log -1 --format=%ct 2>/dev/null || date +%s)")/" \
	packaging/changelog.in | gzip -9n > "$doc/changelog.gz"
install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/ods-keyguard"

install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$root/DEBIAN/"
echo /etc/nagios-plugins/config/ods-keyguard.cfg > "$root/DEBIAN/conffiles"
# md5sums of every file but the conffiles, for debsums and dpkg --verify.
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
	sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
sed "s/@VERSION@/$version/; s/@ARCH@/$arch/; s/@SIZE@/$size/" packaging/control.in > "$root/DEBIAN/control"

mkdir -p "$DIST"
out="$DIST/ods-keyguard_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
