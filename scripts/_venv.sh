# Shared by demo.sh and test.sh: create ./.venv with Python >= 3.11 and install the project.
ensure_venv() {
    local extras="$1"
    local python="${PYTHON:-}"
    if [ -z "$python" ]; then
        for candidate in python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                python="$candidate"
                break
            fi
        done
    fi
    if [ -z "$python" ]; then
        echo "MedAlliance needs Python 3.11 or newer (set PYTHON=/path/to/python)." >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "Creating .venv with $("$python" --version)…"
        "$python" -m venv .venv
    fi
    local stamp=".venv/.installed${extras}"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "Installing MedAlliance${extras} into .venv…"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".${extras}"
        touch "$stamp"
    fi
}
