#!/usr/bin/env bash
# Refetch the JavaScript libraries `dspx report` inlines into every report (MIT, from the npm
# registry; see VERSIONS). Run from anywhere: writes beside this script. Needs npm and tar.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
while read -r name version; do
    [ -z "$name" ] || [ "${name#\#}" != "$name" ] && continue
    npm pack --silent "$name@$version" >/dev/null
    mkdir "$name" && tar xzf ./*"$version".tgz -C "$name" && rm ./*"$version".tgz
done < "$here/VERSIONS"
# The files the report inlines, without their source-map comments (a map is never beside them).
strip() { sed -e '/^\/\/# sourceMappingURL=/d' -e 's#/\*\# sourceMappingURL=[^*]*\*/##' "$1" > "$2"; }
strip tabulator-tables/package/dist/js/tabulator.min.js "$here/tabulator.min.js"
strip tabulator-tables/package/dist/css/tabulator.min.css "$here/tabulator.min.css"
cp tabulator-tables/package/LICENSE "$here/LICENSE.tabulator"
strip chart.js/package/dist/chart.umd.min.js "$here/chart.umd.min.js"
cp chart.js/package/LICENSE.md "$here/LICENSE.chart.js.md"
echo "fetched into $here:"; ls -la "$here"
