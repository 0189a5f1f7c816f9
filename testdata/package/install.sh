#!/bin/sh
# Run by TestDebianPackageInstall in a chroot onto an overlay of the host's
# root: dpkg -i, debsums, a refused dpkg -r while conf.xml names the hooks,
# dpkg -r and dpkg -P. Prints one line per step; FAIL: and exit 1 on the
# first thing that is not as it should be.
set -u
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
fail() { echo "FAIL: $*"; exit 1; }
status() { dpkg-query -W -f '${Status}' ods-keyguard 2>/dev/null; }
timer=/etc/systemd/system/timers.target.wants/ods-keyguard-textfile.timer
synctimer=/etc/systemd/system/timers.target.wants/ods-keyguard-parent-sync.timer
prom=/var/lib/prometheus/node-exporter/ods_keyguard.prom

# A fresh host: no state_dir left by anything before (this is the overlay's
# copy, the host's own is untouched).
rm -rf /var/lib/opendnssec/keyguard
dpkg -i /tmp/pkg/ods-keyguard.deb >/tmp/pkg/log 2>&1 || { cat /tmp/pkg/log; fail "dpkg -i"; }
echo "installed: $(status) $(dpkg-query -W -f '${Version}' ods-keyguard)"
echo "version: $(ods-keyguard --version)"
debsums -s ods-keyguard || fail "debsums"
echo "debsums: clean"
[ "$(stat -c '%a %U:%G' /var/lib/opendnssec/keyguard)" = "2750 root:opendnssec" ] || fail "state_dir: $(stat -c '%a %U:%G' /var/lib/opendnssec/keyguard)"

# The sudo route as shipped: examples/sudoers's rule for nagios. The packaged
# command line runs as root (it reads a keyguard.toml only root may read);
# any other command line is refused by sudo, and that is UNKNOWN.
id nagios >/dev/null 2>&1 || fail "no user nagios (nagios4-core)"
sed -n '/^nagios /p' /usr/share/doc/ods-keyguard/examples/sudoers > /etc/sudoers.d/ods-keyguard
chmod 0440 /etc/sudoers.d/ods-keyguard
visudo -cf /etc/sudoers.d/ods-keyguard >/dev/null || fail "visudo -c: the sudoers example"
mkdir -p /etc/opendnssec
install -m 0600 /dev/null /etc/opendnssec/keyguard.toml
echo 'marker = 1' > /etc/opendnssec/keyguard.toml
asnagios() { setpriv --reuid nagios --regid nagios --init-groups "$@" 2>/dev/null; }
out=$(asnagios /usr/lib/nagios/plugins/check_ods_keyguard --sudo -t 10)
echo "sudo route: $? $out"
out=$(asnagios /usr/lib/nagios/plugins/check_ods_keyguard --sudo -t 11)
echo "sudo refused: $? $out"
rm /etc/opendnssec/keyguard.toml /etc/sudoers.d/ods-keyguard

# What the admin does: enable the textfile timer; node_exporter's file is there.
[ ! -e $timer ] || fail "the textfile timer is enabled by the package"
[ ! -e $synctimer ] || fail "the parent sync timer is enabled by the package: it is shipped disabled"
systemctl enable ods-keyguard-textfile.timer >/dev/null 2>&1 || fail "systemctl enable"
[ -L $timer ] || fail "the timer is not enabled"
systemctl enable ods-keyguard-parent-sync.timer >/dev/null 2>&1 || fail "systemctl enable parent sync"
[ -L $synctimer ] || fail "the parent sync timer is not enabled"
mkdir -p /var/lib/prometheus/node-exporter
echo 'ods_keyguard_up 1' > $prom
echo 'record' > /var/lib/opendnssec/keyguard/history.json

# conf.xml names the hooks: dpkg -r is refused, nothing removed.
mkdir -p /etc/opendnssec
cat > /etc/opendnssec/conf.xml <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
	<Enforcer>
		<DelegationSignerSubmitCommand>/usr/sbin/ods-keyguard-ds-submit</DelegationSignerSubmitCommand>
		<DelegationSignerRetractCommand>/usr/sbin/ods-keyguard-ds-retract</DelegationSignerRetractCommand>
	</Enforcer>
</Configuration>
XML
rm -f /etc/opendnssec/keyguard.toml
if dpkg -r ods-keyguard >/tmp/pkg/out 2>&1; then fail "removed while conf.xml names the hooks"; fi
grep -q '^ods-keyguard: refusing to remove the package: /etc/opendnssec/conf.xml names$' /tmp/pkg/out || { cat /tmp/pkg/out; fail "no refusal message"; }
cat /tmp/pkg/out
case "$(status)" in *" ok installed") ;; *) fail "status after the refusal: $(status)" ;; esac
[ -x /usr/sbin/ods-keyguard-ds-submit ] && [ -L $timer ] && [ -f $prom ] || fail "something was removed"

# The hooks only in a comment of Debian's conf.xml, but named in the conf.xml
# keyguard.toml points at: still refused.
cat > /etc/opendnssec/conf.xml <<'XML'
<Configuration><Enforcer>
	<!-- <DelegationSignerSubmitCommand>/usr/sbin/ods-keyguard-ds-submit</DelegationSignerSubmitCommand> -->
</Enforcer></Configuration>
XML
mkdir -p /srv/ods
sed 's|<!-- ||; s| -->||' /etc/opendnssec/conf.xml > /srv/ods/conf.xml
echo 'opendnssec_conf = "/srv/ods/conf.xml"' > /etc/opendnssec/keyguard.toml
if dpkg -r ods-keyguard >/tmp/pkg/out 2>&1; then fail "removed while keyguard.toml's conf.xml names the hooks"; fi
grep -q 'refusing to remove the package: /srv/ods/conf.xml names$' /tmp/pkg/out || { cat /tmp/pkg/out; fail "no refusal naming /srv/ods/conf.xml"; }
echo "refused: /srv/ods/conf.xml"

# The enforcer started with -c another conf.xml that names them: refused.
echo '<Configuration/>' > /srv/ods/conf.xml
mkdir -p /srv/ods2
sed 's|<!-- ||; s| -->||' /etc/opendnssec/conf.xml > /srv/ods2/conf.xml
touch /etc/default/opendnssec-enforcer
cp /etc/default/opendnssec-enforcer /tmp/pkg/default
echo 'ODS_ENFORCERD_OPT="-c /srv/ods2/conf.xml"' >> /etc/default/opendnssec-enforcer
if dpkg -r ods-keyguard >/tmp/pkg/out 2>&1; then fail "removed while the enforcer's -c conf.xml names the hooks"; fi
grep -q 'refusing to remove the package: /srv/ods2/conf.xml names$' /tmp/pkg/out || { cat /tmp/pkg/out; fail "no refusal naming /srv/ods2/conf.xml"; }
echo "refused: /srv/ods2/conf.xml"
cp /tmp/pkg/default /etc/default/opendnssec-enforcer

# conf.xml names the publish gate as the signer's NotifyCommand: refused
# (no signed zone would reach the name servers without it).
cp /etc/opendnssec/conf.xml /tmp/pkg/conf.xml
cat > /etc/opendnssec/conf.xml <<'XML'
<Configuration><Signer>
	<NotifyCommand>/usr/sbin/ods-keyguard-publish %zone %zonefile</NotifyCommand>
</Signer></Configuration>
XML
if dpkg -r ods-keyguard >/tmp/pkg/out 2>&1; then fail "removed while conf.xml names the publish gate"; fi
grep -q "^ods-keyguard-publish as the signer's <NotifyCommand>. Without it no signed$" /tmp/pkg/out || { cat /tmp/pkg/out; fail "no refusal naming the publish gate"; }
echo "refused: the publish gate"
cp /tmp/pkg/conf.xml /etc/opendnssec/conf.xml

# The hooks gone from all: removed. The timer disabled, the textfile gone,
# the conffile and state_dir kept.
dpkg -r ods-keyguard >/tmp/pkg/out 2>&1 || { cat /tmp/pkg/out; fail "dpkg -r"; }
echo "removed: $(status)"
[ ! -e /usr/sbin/ods-keyguard ] || fail "the binary is still there"
[ ! -L $timer ] || fail "the timer is still enabled"
[ ! -L $synctimer ] || fail "the parent sync timer is still enabled"
[ ! -e $prom ] || fail "the stale textfile is still there"
[ -f /etc/nagios-plugins/config/ods-keyguard.cfg ] || fail "remove took the conffile"
[ -f /var/lib/opendnssec/keyguard/history.json ] || fail "remove took state_dir"

# Purge: the conffile and the enablement state go, state_dir stays.
dpkg -P ods-keyguard >/tmp/pkg/out 2>&1 || { cat /tmp/pkg/out; fail "dpkg -P"; }
echo "purged: $(status || true)"
[ ! -e /etc/nagios-plugins/config/ods-keyguard.cfg ] || fail "purge left the conffile"
[ ! -e /var/lib/systemd/deb-systemd-helper-enabled/ods-keyguard-textfile.timer.dsh-also ] || fail "purge left the timer's state"
[ ! -e /var/lib/systemd/deb-systemd-helper-enabled/ods-keyguard-parent-sync.timer.dsh-also ] || fail "purge left the parent sync timer's state"
[ -f /var/lib/opendnssec/keyguard/history.json ] || fail "purge took state_dir"
echo "state_dir kept: history.json"
