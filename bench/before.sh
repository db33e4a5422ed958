#!/usr/bin/env bash
# Install an earlier revision of latkit beside the working tree, to benchmark before vs after.
#
#   bench/before.sh REV DIR
#
# makes DIR/src, a detached git worktree of REV (kept if it is already there), and DIR/site, a
# regular (non-editable) install of it with no dependencies: the package maps the top-level
# folders profilers/, predictors/ and search/ to latkit.* through setuptools' package-dir, so the
# source tree alone does not import. Use it with
#
#   PYTHONPATH=DIR/site python -m latkit ...        # REV's code, this venv's dependencies
#
# DIR/site is rebuilt each time, so it always matches DIR/src. Run it with the venv active.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 REV DIR" >&2
    exit 2
fi
rev=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python}

if [[ ! -e "$dir/src/.git" ]]; then
    git -C "$repo" worktree add --detach "$dir/src" "$rev" >&2
fi
want=$(git -C "$repo" rev-parse "$rev^{commit}")
have=$(git -C "$dir/src" rev-parse HEAD)
if [[ "$want" != "$have" ]]; then
    echo "$dir/src is at $have, not $rev ($want); remove it (git worktree remove) or use another DIR" >&2
    exit 1
fi

rm -rf "$dir/site" "$dir/src/build"
# --no-build-isolation: build with the venv's setuptools, no index needed.
"$python" -m pip install --quiet --no-deps --no-build-isolation --target "$dir/site" "$dir/src" >&2
rm -rf "$dir/src/build" "$dir/src"/*.egg-info
# from DIR (not the repo, whose latkit/ folder would shadow it): prints DIR/site/latkit/__init__.py
(cd "$dir" && PYTHONPATH="$dir/site" "$python" -c 'import latkit; print(latkit.__file__)')
