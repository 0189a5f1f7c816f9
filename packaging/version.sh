#!/bin/sh
# The one version of ods-keyguard: packaging/VERSION, and in a git tree
# +gitSTAMP.COMMIT of the commit built. The package carries it, and the
# binary prints it (make build and make deb pass it with -X main.buildVersion).
set -eu
cd "$(dirname "$0")/.."
base=$(cat packaging/VERSION)
if git rev-parse --short=12 HEAD >/dev/null 2>&1; then
	stamp=$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S)
	echo "$base+git$stamp.$(git rev-parse --short=12 HEAD)"
else
	echo "$base"
fi
