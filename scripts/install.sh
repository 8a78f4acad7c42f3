#!/usr/bin/env bash
# Put the `cementguard` command on the PATH for this user (`make install`; README "Install").
#
#   scripts/install.sh [--method auto|pipx|uv|venv] [--prefix DIR] [--pip-args "ARGS"]
#
# auto (default): pipx if it is installed, else `uv tool install` if uv is, else "venv": a private
# virtual environment in PREFIX/share/cementguard/venv (what pipx would make) with the command linked
# into PREFIX/bin. PREFIX defaults to ~/.local, whose bin directory most desktop Linux PATHs include;
# the script says so when it is not on yours. Re-running it upgrades in place. No sudo, nothing
# outside PREFIX (venv method) or pipx's/uv's own directories.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
method=auto
prefix="${HOME}/.local"
pip_args=""
python="${PYTHON:-python3}"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --method) method="${2:?--method needs a value: auto, pipx, uv or venv}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --pip-args) pip_args="${2-}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$method" in
    auto|pipx|uv|venv) ;;
    *) echo "install.sh: --method $method is not one of auto, pipx, uv, venv" >&2; exit 2 ;;
esac
if [ "$method" = auto ]; then
    if command -v pipx >/dev/null 2>&1; then method=pipx
    elif command -v uv >/dev/null 2>&1; then method=uv
    else method=venv
    fi
fi

case "$method" in
    pipx)
        pipx install --force "$here"
        where="$(command -v cementguard || true)"
        ;;
    uv)
        uv tool install --force "$here"
        where="$(command -v cementguard || true)"
        ;;
    venv)
        venv="$prefix/share/cementguard/venv"
        mkdir -p "$prefix/bin" "$(dirname "$venv")"
        [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
        # shellcheck disable=SC2086  # pip_args is a list of words on purpose
        "$venv/bin/python" -m pip install --quiet --upgrade $pip_args "$here"
        ln -sf "$venv/bin/cementguard" "$prefix/bin/cementguard"
        where="$prefix/bin/cementguard"
        ;;
esac

echo "installed with $method: ${where:-cementguard}"
"${where:-cementguard}" --version
case ":$PATH:" in
    *":$(dirname "${where:-/nonexistent/x}"):"*) echo "cementguard is on your PATH" ;;
    *) echo "add $(dirname "${where:-$prefix/bin/x}") to your PATH, e.g.: echo 'export PATH=\"$(dirname "${where:-$prefix/bin/x}"):\$PATH\"' >> ~/.bashrc" ;;
esac
