#!/usr/bin/env bash
# The HTML report renders in headless Chromium without console errors; a
# screenshot is taken and checked for content. Skips (exit 0, with a message)
# only when chromium is not installed (scripts/install-deps.sh --test has it).
set -euo pipefail
: "${KV_BUILD:?}" "${KV_FIXTURES:?}"
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
	echo "SKIP: chromium is not installed (scripts/install-deps.sh --test installs it)"
	exit 0
fi
out=$(mktemp -d)
profile=$(mktemp -d)
trap 'rm -rf "$out" "$profile"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for fx in suite-base suite-edge; do
	mkdir -p "$out/$fx"
	"$KV_BUILD/kvbench" report "$KV_FIXTURES/results/$fx" -o "$out/$fx" 2>/dev/null
	page=$out/$fx/report.html
	rm -rf "${profile:?}"/*
	timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$profile" --enable-logging=stderr --v=0 \
		--screenshot="$out/$fx/shot.png" --window-size=1280,2000 "file://$page" \
		>"$out/$fx/chrome.log" 2>&1 || fail "$fx: chromium exited $? ($(tail -3 "$out/$fx/chrome.log"))"
	# Console messages of the page are logged as ":CONSOLE(...)" / ":CONSOLE:..." lines.
	if grep -E "CONSOLE|Uncaught" "$out/$fx/chrome.log" | grep -q .; then
		grep -E "CONSOLE|Uncaught" "$out/$fx/chrome.log" >&2
		fail "$fx: console messages while rendering report.html"
	fi
	[ -s "$out/$fx/shot.png" ] || fail "$fx: no screenshot"
	"$KV_BUILD/tests/png_check" "$out/$fx/shot.png" 1280 2000 0.02 >/dev/null ||
		fail "$fx: the screenshot is blank"
done
# The check catches a page that has an error: a deliberate one must be seen.
printf '<!DOCTYPE html><html><body><script>undefinedFn()</script></body></html>' >"$out/bad.html"
rm -rf "${profile:?}"/*
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--user-data-dir="$profile" --enable-logging=stderr --v=0 \
	--screenshot="$out/bad.png" --window-size=400,300 "file://$out/bad.html" >"$out/bad.log" 2>&1 || true
grep -q "Uncaught" "$out/bad.log" || fail "the console check does not see a deliberate error"
echo "ok: report_chromium"
