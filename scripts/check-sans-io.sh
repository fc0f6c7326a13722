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
LOGIC=(api runtime controllers kubelet proxy lab scenario lb profile registry sim)
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

failed=0
for crate in "${crates[@]}"; do
  # "name vX.Y.Z [(path)] [(*)]" per line -> "name@X.Y.Z", one per package version.
  deps=$(cargo tree -e normal -p "$crate" --prefix none | awk 'NF {sub(/^v/, "", $2); print $1 "@" $2}' | sort -u)
  bad_here=0
  for bad in "${FORBIDDEN[@]}"; do
    while read -r spec; do
      [ -n "$spec" ] || continue
      echo "check-sans-io: FAIL: '$crate' depends on '$spec' (I/O belongs in crates/live); reached through:" >&2
      cargo tree -e normal -p "$crate" -i "$spec" >&2
      bad_here=1
    done < <(grep -x -- "$bad@.*" <<<"$deps" || true)
  done
  if [ "$bad_here" = 0 ]; then
    echo "check-sans-io: ok: $crate"
  else
    failed=1
  fi
done

if [ "$failed" != 0 ]; then
  echo "check-sans-io: the logic crates must not depend on ${FORBIDDEN[*]}" >&2
  exit 1
fi
