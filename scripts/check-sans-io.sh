#!/usr/bin/env bash
# Checks that the logic crates stay sans-IO (docs/architecture.md, "Logic and drivers"): none
# of them may depend, directly or through another crate, on an I/O runtime or driver crate
# (tokio, mio, hyper, kube, kube-client, redb, netlab). Those belong in the `live` crate (and
# the apiserver/store/zonelab binaries), so the simulator can run the same logic on one thread
# in virtual time.
#
# Reads `cargo tree -e normal` (normal dependencies only: dev- and build-dependencies are not
# part of what a driver links), which works offline from Cargo.lock. On a violation it names
# the crate, the offending dependency and how it is reached (`cargo tree -i`), and exits 1.
#
# Usage: scripts/check-sans-io.sh            the logic crates that are workspace members
#        scripts/check-sans-io.sh CRATE...   only these (each must be a workspace member)
# Called by .ci/run before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# The logic crates; names not (yet) in the workspace are skipped, so the list can name crates
# that are still being extracted.
LOGIC=(api runtime controllers kubelet proxy lab scenario lb profile registry sim compare)
FORBIDDEN=(tokio mio hyper kube kube-client redb netlab)

members=$(cargo tree --workspace -e normal --depth 0 --prefix none | awk 'NF {print $1}' | sort -u)

if [ "$#" -gt 0 ]; then
  crates=("$@")
  for c in "${crates[@]}"; do
    if ! grep -qx -- "$c" <<<"$members"; then
      echo "check-sans-io: $c is not a workspace member" >&2
      exit 2
    fi
  done
else
  crates=()
  for c in "${LOGIC[@]}"; do
    if grep -qx -- "$c" <<<"$members"; then
      crates+=("$c")
    else
      echo "check-sans-io: $c is not a workspace member yet; skipped"
    fi
  done
fi

# The forbidden packages CRATE links, one "name@version" a line.
offenders() {
  # "name vX.Y.Z [(path)] [(*)]" per line -> "name@X.Y.Z", one per package version.
  local deps bad
  deps=$(cargo tree -e normal -p "$1" --prefix none | awk 'NF {sub(/^v/, "", $2); print $1 "@" $2}' | sort -u)
  for bad in "${FORBIDDEN[@]}"; do
    grep -x -- "$bad@.*" <<<"$deps" || true
  done
}

# Canary: the driver crate must be caught, or the check has gone blind (say, cargo tree's
# output format changed) and would pass anything.
if grep -qx live <<<"$members" && ! offenders live | grep -q '^tokio@'; then
  echo "check-sans-io: the check does not see tokio in the live crate; it is broken" >&2
  exit 2
fi

failed=0
for crate in "${crates[@]}"; do
  found=$(offenders "$crate")
  if [ -z "$found" ]; then
    echo "check-sans-io: ok: $crate"
    continue
  fi
  failed=1
  while read -r spec; do
    echo "check-sans-io: FAIL: '$crate' depends on '$spec' (I/O belongs in crates/live); reached through:" >&2
    cargo tree -e normal -p "$crate" -i "$spec" >&2
  done <<<"$found"
done

if [ "$failed" != 0 ]; then
  echo "check-sans-io: the logic crates must not depend on ${FORBIDDEN[*]}" >&2
  exit 1
fi
