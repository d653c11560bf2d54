#!/usr/bin/env bash
# Builds one virtual environment per benchmark peer (benchmarks/peers/README.md says why):
# Ray, BentoML and KServe pin protobuf/grpcio/pydantic versions of their own, so none of them
# may go into the project's .venv or its default install. Each venv lives outside the repo,
# under ~/.cache/cellship/peers/<name>-<hash of its requirements file>, so changing a pin
# builds a new one and an unchanged one is reused.
#
#   bash benchmarks/peers/setup.sh [PEER...]      # default: every requirements/*.txt
#
# A peer whose install fails is reported (its pip log is kept beside its venv) and the
# others still build; the exit status is non-zero if any failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${CELLSHIP_PEERS_HOME:-$HOME/.cache/cellship/peers}"
python="${PEERS_PYTHON:-python3.11}"
mkdir -p "$root"

if [ "$#" -eq 0 ]; then
  set -- $(cd "$here/requirements" && ls *.txt | sed 's/\.txt$//')
fi

failed=()
for peer in "$@"; do
  req="$here/requirements/$peer.txt"
  if [ ! -f "$req" ]; then
    echo "setup.sh: no such peer: $peer (no $req)" >&2
    failed+=("$peer"); continue
  fi
  hash="$(sha256sum "$req" | cut -c1-12)"
  venv="$root/$peer-$hash"
  if [ -f "$venv/.complete" ]; then
    echo "$peer: $venv (up to date)"; continue
  fi
  rm -rf "$venv"
  echo "$peer: building $venv" >&2
  if "$python" -m venv "$venv" \
     && "$venv/bin/pip" install -q --upgrade pip >"$root/$peer-$hash.log" 2>&1 \
     && "$venv/bin/pip" install -r "$req" >>"$root/$peer-$hash.log" 2>&1; then
    # pip's own consistency check is recorded, not fatal: the benchmark's smoke run decides.
    "$venv/bin/pip" check >"$venv/pip-check.txt" 2>&1 || echo "$peer: pip check: $(cat "$venv/pip-check.txt")" >&2
    "$venv/bin/pip" freeze >"$venv/freeze.txt"
    touch "$venv/.complete"
    echo "$peer: $venv"
  else
    echo "setup.sh: $peer failed; last lines of $root/$peer-$hash.log:" >&2
    tail -n 15 "$root/$peer-$hash.log" >&2
    failed+=("$peer")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "setup.sh: failed: ${failed[*]}" >&2
  exit 1
fi
