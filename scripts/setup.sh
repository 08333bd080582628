#!/usr/bin/env bash
# Sets up a machine to run this project: Deno 2.9.6 (from npm), and a WebGPU adapter. Where no
# hardware Vulkan adapter is found on Debian/Ubuntu, it installs Mesa's lavapipe, the Vulkan
# driver that runs on the CPU: on Debian 12 from bookworm-backports (Mesa 25), 4-5x faster
# than bookworm's own Mesa 22 and with shader-f16. Idempotent: it says what it did and skipped.
#
#     bash scripts/setup.sh
set -euo pipefail

DENO_VERSION=2.9.6
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Deno -------------------------------------------------------------------------------
if command -v deno >/dev/null 2>&1 && deno --version | grep -q "^deno $DENO_VERSION "; then
  say "skipped Deno: $DENO_VERSION is installed"
else
  command -v npm >/dev/null 2>&1 || { say "error: npm is needed to install Deno; install Node.js first"; exit 1; }
  say "installing Deno $DENO_VERSION from npm"
  as_root npm install --global --no-fund --no-audit "deno@$DENO_VERSION" >/dev/null
  deno --version | head -n 1 | sed 's/^/setup: installed /'
fi

# --- link-grammar (for the eval only) -------------------------------------------------
# deno task eval scores grammar with link-grammar's parser; nothing else needs it.
if command -v link-parser >/dev/null 2>&1; then
  say "skipped link-grammar: link-parser is installed (used by deno task eval)"
elif command -v apt-get >/dev/null 2>&1; then
  say "installing link-grammar (the grammar score of deno task eval)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq link-grammar >/dev/null 2>&1 ||
    { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq link-grammar >/dev/null; }
  say "installed link-grammar $(dpkg-query -W -f='${Version}' link-grammar)"
else
  say "note: install link-grammar (link-parser) with your package manager for deno task eval's"
  say "grammar score; everything else works without it"
fi

# --- Chromium (for the browser test only) ----------------------------------------------
# tests/pipeline/serve.test.ts runs the chat page (deno task serve) in headless Chromium, whose
# WebGPU runs on the CPU (SwiftShader); nothing else needs a browser.
if command -v chromium >/dev/null 2>&1; then
  say "skipped Chromium: $(chromium --version 2>/dev/null | head -n 1) is installed (the browser test)"
elif command -v apt-get >/dev/null 2>&1; then
  say "installing chromium (the browser test of the chat page)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq chromium >/dev/null; }
  say "installed chromium $(dpkg-query -W -f='${Version}' chromium)"
else
  say "note: install Chromium (or set CHROMIUM to its path) for the browser test of the chat"
  say "page, tests/pipeline/serve.test.ts; everything else works without it"
fi

# --- WebGPU adapter ---------------------------------------------------------------------
probe() { DENO_WEBGPU_BACKEND=vulkan deno run --allow-all bench/adapter.ts 2>/dev/null || true; }

adapter=$(probe)
mesa_version=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
if grep -q '^cpu fallback: false' <<<"$adapter"; then
  say "skipped the Vulkan software driver: a hardware adapter is present"
elif [ "${mesa_version%%.*}" != "" ] && [ "${mesa_version%%.*}" -ge 25 ] 2>/dev/null; then
  say "skipped the Vulkan software driver: mesa-vulkan-drivers $mesa_version is installed"
elif ! command -v apt-get >/dev/null 2>&1; then
  say "error: no Vulkan adapter, and this is not Debian/Ubuntu; install your distribution's"
  say "Mesa Vulkan drivers (lavapipe) or a GPU driver, then run this again"
  exit 1
else
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    # Enable bookworm-backports on the machine's own mirror by extending its existing entry.
    if grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      say "skipped enabling bookworm-backports: already enabled"
    elif [ -f /etc/apt/sources.list.d/debian.sources ]; then
      as_root sed -i 's/^Suites: bookworm bookworm-updates$/& bookworm-backports/' \
        /etc/apt/sources.list.d/debian.sources
      say "enabled bookworm-backports in /etc/apt/sources.list.d/debian.sources"
    else
      as_root sed -i -E 's|^(deb\s+(\[[^]]*\]\s+)?\S+)\s+bookworm\s+(.*)$|&\n\1 bookworm-backports \3|' \
        /etc/apt/sources.list
      say "enabled bookworm-backports in /etc/apt/sources.list"
    fi
    target=(-t bookworm-backports)
  else
    target=()
  fi
  say "installing mesa-vulkan-drivers ${target[*]:-} (lavapipe, a Vulkan driver on the CPU)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${target[@]}" \
    mesa-vulkan-drivers >/dev/null
  say "installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
  adapter=$(probe)
fi

if grep -q '^adapter: ' <<<"$adapter"; then
  say "WebGPU $(grep '^adapter: ' <<<"$adapter")"
else
  say "error: still no WebGPU adapter after setup; run 'deno task adapter' to see why"
  exit 1
fi
