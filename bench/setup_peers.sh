#!/usr/bin/env bash
# Install the peer queues for bench/run.py, each into its own venv under bench/.venv-peers/
# (their redis-py pins conflict: arq wants redis<6, taskiq-redis wants >=6), and BullMQ for
# Node into bench/node/. None of this is a dependency of redpromise. Safe to re-run; a peer
# that fails to install is reported and skipped (bench/run.py records why in its table).
#   bash bench/setup_peers.sh [peer ...]     # default: all
set -u
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3.11}"
root="$here/.venv-peers"
mkdir -p "$root"
common=(hiredis msgpack aiohttp psutil)
declare -A specs=(
  [arq]="arq"
  [saq]="saq[redis]"
  [streaq]="streaq"
  [taskiq]="taskiq taskiq-redis"
  [rq]="rq"
  [celery]="celery[redis]"
  [bullmq_py]="bullmq"
  [tools]="py-spy"
)
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(arq saq streaq taskiq rq celery bullmq_py tools bullmq_node)
for name in "${want[@]}"; do
  if [ "$name" = bullmq_node ]; then
    if command -v npm >/dev/null; then
      mkdir -p "$here/node" && cd "$here/node"
      [ -f package.json ] || echo '{"name":"redpromise-bench-node","private":true,"type":"module"}' > package.json
      if npm install --silent --no-audit --no-fund bullmq ioredis >/dev/null 2>&1; then echo "ok   bullmq_node"; else echo "FAIL bullmq_node"; fi
      cd "$here"
    else
      echo "FAIL bullmq_node: npm not found"
    fi
    continue
  fi
  venv="$root/$name"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  # shellcheck disable=SC2086
  if "$venv/bin/pip" install -q "${common[@]}" ${specs[$name]} 2>"$venv.err"; then
    echo "ok   $name"; rm -f "$venv.err"
  else
    echo "FAIL $name (see $venv.err)"
  fi
done
