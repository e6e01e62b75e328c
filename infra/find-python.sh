#!/usr/bin/env bash
# Print the absolute path of a Python >= 3.12 interpreter, or exit 1 with a message on stderr.
#
# Order: $PYTHON, then python3.12 / python3.13 / python3 on PATH, then pyenv-installed
# 3.12.x / 3.13.x versions (by `pyenv root`, newest patch first, 3.12 before 3.13).
#
# 3.12 is preferred over 3.13 because constraints.txt was resolved and measured on 3.12
# (the GPU machines run 3.12 too); set PYTHON=... to force another one.
#
# Every candidate is *executed* and its version checked: on pyenv machines `python3.12` on PATH is
# usually a shim that fails ("pyenv: python3.12: command not found") unless that version is
# selected, so "exists on PATH" proves nothing. The printed path is the real interpreter
# (sys.executable), never a shim, so a venv made from it does not depend on PYENV_VERSION.
set -euo pipefail

MIN_MAJOR=3
MIN_MINOR=12

tried=()

check() {
    # check CANDIDATE -> prints sys.executable and returns 0 if it runs and is new enough
    local cand=$1 out
    [[ -n "$cand" ]] || return 1
    tried+=("$cand")
    out=$("$cand" -c "import sys
if sys.version_info[:2] < ($MIN_MAJOR, $MIN_MINOR): raise SystemExit(3)
import venv, ensurepip  # a venv must be creatable with pip (Debian splits these out)
print(sys.executable)" 2>/dev/null) || return 1
    [[ -n "$out" && -x "$out" ]] || return 1
    printf '%s\n' "$out"
}

# 1. explicit choice
if [[ -n "${PYTHON:-}" ]]; then
    if check "$PYTHON"; then exit 0; fi
    echo "find-python: \$PYTHON=$PYTHON is not a working Python >= $MIN_MAJOR.$MIN_MINOR with venv/ensurepip" >&2
    exit 1
fi

# 2. on PATH (may be pyenv shims: they only work when the version is selected)
for name in python3.12 python3.13 python3; do
    if p=$(command -v "$name" 2>/dev/null); then
        check "$p" && exit 0
    fi
done

# 3. pyenv-installed versions, called directly (no shim, no PYENV_VERSION needed)
roots=()
if command -v pyenv >/dev/null 2>&1; then
    roots+=("$(pyenv root 2>/dev/null || true)")
fi
roots+=("${PYENV_ROOT:-}" "$HOME/.pyenv")
for root in "${roots[@]}"; do
    [[ -n "$root" && -d "$root/versions" ]] || continue
    for minor in 12 13; do
        # newest patch first: sort -V on the version directory names
        while IFS= read -r d; do
            [[ -n "$d" ]] || continue
            for exe in "$d/bin/python3.$minor" "$d/bin/python3"; do
                [[ -x "$exe" ]] && check "$exe" && exit 0
            done
        done < <(find "$root/versions" -mindepth 1 -maxdepth 1 -name "3.$minor.*" 2>/dev/null \
                   | grep -E "/3\.$minor\.[0-9]+$" | sort -rV)
    done
done

# 4. common fixed locations
for exe in /usr/local/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.13 /usr/bin/python3.13; do
    [[ -x "$exe" ]] && check "$exe" && exit 0
done

{
    echo "find-python: no Python >= $MIN_MAJOR.$MIN_MINOR found (with venv + ensurepip)."
    if ((${#tried[@]})); then
        echo "  tried: ${tried[*]}"
    fi
    echo "  Install one (e.g. 'pyenv install 3.12', or apt-get install python3.12-venv where available)"
    echo "  or point to it: PYTHON=/path/to/python3.12 make venv"
} >&2
exit 1
