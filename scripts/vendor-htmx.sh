#!/usr/bin/env bash
# Fetches the pinned htmx release from the npm registry into the web UI's static files
# (appliance/web/static/htmx.min.js): the UI loads no script from elsewhere (its
# Content-Security-Policy allows none). Run it to move to another release, then commit.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.0.11
SHA256=${HTMX_SHA256:-d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@$VERSION" >/dev/null && tar xzf htmx.org-"$VERSION".tgz)
dest=appliance/web/static/htmx.min.js
cp "$work/package/dist/htmx.min.js" "$dest"
sum=$(sha256sum "$dest" | cut -d' ' -f1)
[[ -z $SHA256 || $sum == "$SHA256" ]] || { echo "vendor-htmx: $sum is not $SHA256" >&2; exit 1; }
echo "vendor-htmx: htmx $VERSION, sha256 $sum -> $dest"
