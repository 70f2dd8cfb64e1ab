#!/usr/bin/env bash
# Makes a fresh Debian or Ubuntu machine ready for Hearth: system packages (as
# root, or printed as exact instructions), npm dependencies, the compiled CLI, and
# the guest image.
# Every step is skipped when already done, so `npm start` and `npm test` can
# both call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
have_pkg busybox-static || missing+=(busybox-static)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
have_pkg libc6-dev || missing+=(libc6-dev)
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# The test suite reads Hearth's initramfs archives back with GNU cpio.
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
# TAP networks for VMs with an egress allowlist (and for Firecracker) are filtered with nftables.
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# The dashboard test drives Debian's Chromium (/usr/bin/chromium) through playwright-core. Only
# the tests need it, so it is installed as root but never blocks `npm start` for other users.
if [ "$(id -u)" = 0 ]; then command -v chromium >/dev/null 2>&1 || missing+=(chromium); fi
# The ledger tests and the scale-out suite start throw-away PostgreSQL servers from Debian's
# package (its binaries live in /usr/lib/postgresql/<version>/bin, not on PATH).
if [ "$(id -u)" = 0 ]; then ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql); fi
if [ "$(id -u)" != 0 ] && { ! command -v chromium >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }; then
  echo "hearth: note: the test suite also needs Chromium and PostgreSQL: sudo apt-get install -y --no-install-recommends chromium postgresql" >&2
fi

# The guest kernel is fetched with `apt-get download linux-image-cloud-amd64`,
# which needs apt's package lists.
kernel_known=0
policy=$(apt-cache policy linux-image-cloud-amd64 2>/dev/null || true)
case "$policy" in *"Candidate: "[0-9]*) kernel_known=1 ;; esac

if [ "${#missing[@]}" -gt 0 ] || [ "$kernel_known" = 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "hearth: installing system packages: ${missing[*]:-(package lists only)}" >&2
    apt-get update -qq
    if [ "${#missing[@]}" -gt 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  else
    echo "hearth: this machine lacks what Hearth needs. Run once as root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils busybox-static gcc libc6-dev e2fsprogs debootstrap cpio nftables" >&2
    echo "then run this command again." >&2
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "hearth: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# bin/hearth.mjs runs the compiled CLI in dist/ (npm ci builds it through `prepare`). Rebuild when
# any source or compiler setting is newer than the last complete build (dist/.build-stamp).
node scripts/build.mjs --if-stale

node bin/hearth.mjs image build minimal >&2
# The debian image (for hearth run) needs root for debootstrap; as another user,
# hearth image build debian says how to build it.
if [ "$(id -u)" = 0 ]; then node bin/hearth.mjs image build debian >&2; fi
