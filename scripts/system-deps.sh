#!/usr/bin/env bash
# Debian packages the browser and front-door tests need: Chromium, nginx, and a
# colour emoji font so reactions in the screenshots are pictures, not boxes.
# Installed where we are root with apt; elsewhere those tests skip with a reason
# (and fail under CI, which requires them).
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: not root with apt; tests needing ${need[*]} will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "system-deps: apt-get install ${need[*]} failed; those tests will skip" >&2
# nginx's package starts a server on port 80 we do not want; tests run their own.
if command -v service >/dev/null 2>&1; then service nginx stop >/dev/null 2>&1 || true; fi
exit 0
