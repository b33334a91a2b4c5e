#!/bin/sh
# Builds fxmonitor/dashboard/dist, the dashboard's embedded assets:
# the page (src/) and the pinned npm libraries (package-lock.json) with
# their licences. Run by `go generate ./fxmonitor/dashboard`; needs
# node and npm (the npm registry), and only when the sources or the pins
# change: dist/ is committed, so building and testing the Go module needs
# neither.
set -eu
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund
rm -rf dist
mkdir -p dist
cp src/index.html src/app.js src/app.css dist/
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css dist/
cp node_modules/uplot/LICENSE dist/LICENSE.uplot.txt
cp node_modules/@viz-js/viz/dist/viz-global.js dist/viz-global.js
cp licenses/LICENSE.viz-js.txt dist/LICENSE.viz-js.txt
echo "fxmonitor/dashboard: dist/ rebuilt"
