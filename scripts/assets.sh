#!/bin/sh
# The browser bundles, the same commands for `make assets` and the image's build stage: esbuild from
# node_modules (npm libraries only, no CDN) into each app's static/<app>/build, which the node serves.
#
#   scripts/assets.sh [dashboard] [card] [dapp]     (all three when none is named)
#
#   dashboard  the dashboard's charts (uPlot) as one script
#   card       the card's page (card/assets, its protocol client in card/js): an ES module and its CSS,
#              the QR reader as a chunk fetched when the scan screen first needs it; prints the gzipped
#              size of what the page loads to open (goal: at most 150 KB) and the chunk's
#   dapp       the demo dapp (/card/dapp/): the card's provider injected into a page (EIP-6963)
set -eu
cd "$(dirname "$0")/.."

ESBUILD=node_modules/.bin/esbuild
DASHBOARD_BUILD=dashboard/static/dashboard/build
CARD_BUILD=card/static/card/build

gzipped() {
	cat "$@" | gzip -9c | wc -c
}

dashboard() {
	"$ESBUILD" dashboard/assets/charts.js --bundle --minify --format=iife \
		--target=es2020 --outdir="$DASHBOARD_BUILD" --log-level=warning
}

card() {
	rm -rf "$CARD_BUILD/chunks"
	"$ESBUILD" card/assets/card.js --bundle --minify --format=esm --splitting \
		--chunk-names='chunks/[name]-[hash]' --target=es2020 --outdir="$CARD_BUILD" --log-level=warning
	# What the page loads to open: the module and the chunks it imports statically (not the scanner).
	opening=$(grep -o 'chunks/[^"]*\.js' "$CARD_BUILD/card.js" | grep -v scan- | sort -u | sed "s|^|$CARD_BUILD/|")
	# shellcheck disable=SC2086 # one file name a word
	echo "card bundle: $(gzipped "$CARD_BUILD/card.js" $opening) bytes of JavaScript to open," \
		"$(gzipped "$CARD_BUILD/card.css") of CSS, and" \
		"$(gzipped "$CARD_BUILD"/chunks/scan-*.js) more for the QR reader, gzipped"
}

dapp() {
	"$ESBUILD" card/assets/dapp.js --bundle --minify --format=iife \
		--target=es2020 --outdir="$CARD_BUILD" --log-level=warning
	echo "dapp bundle: $(gzipped "$CARD_BUILD/dapp.js") bytes of JavaScript and" \
		"$(gzipped "$CARD_BUILD/dapp.css") of CSS, gzipped"
}

if [ $# -eq 0 ]; then
	set -- dashboard card dapp
fi
for bundle in "$@"; do
	case "$bundle" in
	dashboard | card | dapp) "$bundle" ;;
	*)
		echo "usage: $0 [dashboard] [card] [dapp]" >&2
		exit 2
		;;
	esac
done
