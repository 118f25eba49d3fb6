#!/usr/bin/env bash
# Load benchmark of the Portcullis gateway, side by side with the bare
# upstream and with nginx as a plain TLS reverse proxy, and with a rate limit
# counted in memory and in Redis. See BENCHMARKS.md.
#
# Usage: bench/gateway.sh
#
# Settings (environment variables):
#   DURATION     length of each measured wrk run in seconds, like 20s (default 20s)
#   WARMUP       length of the wrk run before each measured run (default 5s)
#   CONNECTIONS  open connections per run (default 32)
#   THREADS      wrk threads (default 1)
#   KEY_COUNT    keys seeded for the many-keys runs (default 100000)
#   SERVER_CPU   CPU the servers are pinned to (default 0)
#   LOAD_CPU     CPU wrk is pinned to (default 1)
#   SKIP_BUILD   set to 1 to use the binaries already in target/release
#   METRICS      set to 0 to run Portcullis with metrics.listen = "off"
#                (default 1: each node serves metrics on a free port)
#
# Everything listens on 127.0.0.1 only, on free ports picked at start, and
# all state lives in a temporary directory that is removed at exit.
set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
KEY_COUNT=${KEY_COUNT:-100000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
METRICS=${METRICS:-1}

# Seconds a server gets to start listening before the script gives up.
readonly START_TIMEOUT=60
# Path every target serves; Portcullis strips it before proxying.
readonly API_PATH=/api/
# Scope that the route requires and every benchmark key holds.
readonly BENCH_SCOPE=bench:read
readonly TENANT=bench
# Rate of the limited route: the highest rate Portcullis accepts, so no
# request is denied and the runs measure only the cost of the check.
readonly BENCH_RATE="1000000/s"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=
PIDS=()

log() {
    printf '==> %s\n' "$*" >&2
}

fail() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Give each server two seconds to drain, then kill it.
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
}

# Installs nginx, wrk and curl from the distribution when one is missing.
install_tools() {
    command -v redis-server >/dev/null ||
        fail "redis-server is missing; install Debian's redis-server package"
    if command -v wrk >/dev/null && command -v curl >/dev/null && find_nginx >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null ||
        fail "nginx, wrk or curl is missing and apt-get is not available; install them"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || fail "nginx, wrk or curl is missing; run as root or install them"
        sudo=(sudo)
    fi
    log "installing nginx, wrk and curl with apt-get"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk curl >/dev/null
}

# Prints the path of the nginx binary, which Debian puts in /usr/sbin.
find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

# Returns success when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Stores in the variable named $1 a port in 20000-59999 that nothing listens
# on and that this run has not handed out yet. Another process may still take it before the server
# binds it, and then that server fails to start with its own error message.
USED_PORTS=()
pick_port() {
    local -n chosen=$1
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if [[ " ${USED_PORTS[*]} " != *" $port "* ]] && ! port_open "$port"; then
            USED_PORTS+=("$port")
            chosen=$port
            return
        fi
    done
    fail "found no free port on 127.0.0.1"
}

# Waits until server $2 (process $1) accepts connections on port $3, and
# fails when it exits or times out.
wait_for_port() {
    local pid=$1 name=$2 port=$3
    local deadline=$((SECONDS + START_TIMEOUT))
    until port_open "$port"; do
        kill -0 "$pid" 2>/dev/null || fail "$name exited during start; see $WORK/$name.log"
        ((SECONDS < deadline)) || fail "$name did not listen on port $port within ${START_TIMEOUT}s"
        sleep 0.1
    done
}

# Sends one request with curl (arguments: $3 onwards) and fails unless the
# response body contains $2. $1 names the target in the message. This makes
# sure that each target responds as intended before its load run.
check_response() {
    local name=$1 expected=$2
    shift 2
    local body
    body=$(curl -sS -k --max-time 5 "$@") || fail "$name: the check request failed"
    [[ $body == *"$expected"* ]] || fail "$name: expected a body containing $expected, got: $body"
}

# Prints the resident set size of process $1 in MiB.
rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# Writes an nginx configuration for one server with one worker to $1, with
# the server block read from standard input. Temporary paths are set explicitly
# because the distribution's built-in ones are outside the work dir.
write_nginx_conf() {
    local prefix=$1
    mkdir -p "$prefix/tmp"
    {
        cat <<CONF
worker_processes 1;
daemon off;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    # The default of 1000 would make wrk reconnect (and redo the TLS
    # handshake) every 1000 requests, which Portcullis does not force.
    keepalive_requests 1000000;
CONF
        cat
        echo "}"
    } >"$prefix/nginx.conf"
}

# Starts nginx with the configuration under prefix $1, named $2 in logs.
start_nginx() {
    local prefix=$1 name=$2
    "$NGINX" -t -q -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" ||
        fail "invalid nginx configuration $prefix/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
}

# Prints the value of the "key" member of the JSON object on standard input.
json_key() {
    sed -n 's/.*"key"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1
}

# Converts a wrk latency such as 850.00us, 1.20ms or 1.05s to milliseconds.
to_ms() {
    awk -v value="$1" 'BEGIN {
        if (value ~ /us$/) { sub(/us$/, "", value); printf "%.2f", value / 1000 }
        else if (value ~ /ms$/) { sub(/ms$/, "", value); printf "%.2f", value }
        else if (value ~ /m$/) { sub(/m$/, "", value); printf "%.2f", value * 60000 }
        else if (value ~ /s$/) { sub(/s$/, "", value); printf "%.2f", value * 1000 }
        else { printf "%s", value }
    }'
}

# Runs wrk for target $1 against URL $2, optionally with the Lua script $3
# and the script arguments after it: a warm-up run, then the measured run,
# whose output is kept in $WORK/wrk-$1.txt. Sets RESULT_*[$1].
declare -A RESULT_RPS RESULT_P50 RESULT_P99 RESULT_ERRORS
run_target() {
    local target=$1 url=$2
    shift 2
    local wrk=(taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" --timeout 5s --latency)
    if (($# > 0)); then
        wrk+=(-s "$1")
        shift
    fi
    # wrk passes the arguments after "--" to the script's init().
    local script_args=(-- "$@")
    local bound=$((${DURATION%s} + ${WARMUP%s} + 60))

    log "$target: warm-up $WARMUP, then $DURATION against $url"
    timeout "$bound" "${wrk[@]}" -d"$WARMUP" "$url" "${script_args[@]}" >/dev/null
    timeout "$bound" "${wrk[@]}" -d"$DURATION" "$url" "${script_args[@]}" >"$WORK/wrk-$target.txt"

    local output=$WORK/wrk-$target.txt
    RESULT_RPS[$target]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$output")
    RESULT_P50[$target]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$output")")
    RESULT_P99[$target]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$output")")
    # Responses other than 2xx/3xx plus connect, read, write and timeout
    # errors. Any of them makes the run's figures suspect.
    RESULT_ERRORS[$target]=$(awk '
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
        END { print errors + 0 }' "$output")
    if [[ ${RESULT_ERRORS[$target]} != 0 ]]; then
        log "WARNING: $target had ${RESULT_ERRORS[$target]} errors; see below"
        cat "$output" >&2
    fi
    if [[ -n "${PORTCULLIS_PID:-}" ]] && ! kill -0 "$PORTCULLIS_PID" 2>/dev/null; then
        fail "Portcullis exited during the $target run; see $WORK/portcullis.log"
    fi
}

# Prints a ratio of two requests/s figures with two decimals.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'
}

print_machine() {
    echo "- CPUs: $(nproc), $(lscpu | sed -n 's/^Model name:[[:space:]]*//p')"
    echo "- memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
    echo "- wrk: $(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
    echo "- rustc: $(rustc --version)"
    local revision
    revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then
        revision="$revision with uncommitted changes"
    fi
    echo "- Portcullis: commit $revision"
    echo "- load average before the runs: $LOAD_BEFORE"
}

print_summary() {
    local target
    echo
    echo "## Results"
    echo
    echo "wrk: $THREADS thread(s), $CONNECTIONS connections, $DURATION per run after a $WARMUP warm-up;"
    echo "servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU; Portcullis with PORTCULLIS_LOG=warn."
    echo "Metrics listener: $([[ $METRICS == 1 ]] && echo on || echo off)."
    echo
    echo "| target | requests/s | p50 ms | p99 ms | errors |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for target in "${TARGETS[@]}"; do
        printf '| %s | %s | %s | %s | %s |\n' "${TARGET_LABELS[$target]}" "${RESULT_RPS[$target]}" \
            "${RESULT_P50[$target]}" "${RESULT_P99[$target]}" "${RESULT_ERRORS[$target]}"
    done
    echo
    echo "| ratio of requests/s | one key | $KEY_COUNT keys | $KEY_COUNT keys, second run |"
    echo "| --- | ---: | ---: | ---: |"
    local base
    declare -A base_labels=([nginx]="(b) nginx" [upstream]="(a) upstream")
    for base in nginx upstream; do
        printf '| (c) Portcullis / %s |' "${base_labels[$base]}"
        for target in one-key many-keys many-keys-again; do
            printf ' %s |' "$(ratio "${RESULT_RPS[$target]}" "${RESULT_RPS[$base]}")"
        done
        echo
    done
    echo
    echo "| ratio of requests/s | (d) memory limit / (c) | (e) Redis limit / (c) |"
    echo "| --- | ---: | ---: |"
    printf '| one key | %s | %s |\n' "$(ratio "${RESULT_RPS[memory-limit]}" "${RESULT_RPS[one-key]}")" \
        "$(ratio "${RESULT_RPS[redis-limit]}" "${RESULT_RPS[one-key]}")"
    echo
    echo "- Portcullis resident memory (VmRSS): idle $RSS_IDLE MiB, after the first" \
        "$KEY_COUNT-key run $RSS_AFTER MiB, after the second $RSS_AFTER_AGAIN MiB"
    echo "- seeding $KEY_COUNT keys: ${SEED_SECONDS}s"
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local setting
    for setting in DURATION WARMUP; do
        [[ ${!setting} =~ ^[0-9]+s$ ]] || fail "$setting must be a number of seconds like 20s, not ${!setting}"
    done
    [[ $METRICS == 0 || $METRICS == 1 ]] || fail "METRICS must be 0 or 1, not $METRICS"
    if (($(nproc) < 2)); then
        log "WARNING: only one CPU; servers and wrk share it"
    fi
    install_tools
    NGINX=$(find_nginx)

    if [[ $SKIP_BUILD != 1 ]]; then
        log "building the release binary and the seeding tool"
        # Two builds, because building the example together with the binary
        # would give the binary the dev-dependency features of the example.
        (cd "$ROOT" && cargo build --release -q -p portcullis --bin portcullis)
        (cd "$ROOT" && cargo build --release -q -p portcullis --example seed_keys)
    fi

    WORK=$(mktemp -d -t portcullis-bench.XXXXXX)
    # Keys and the master key are written below, so new files are private.
    umask 077
    # Copies, so that a build started elsewhere during the run cannot
    # replace the binaries under test.
    local bin=$WORK/portcullis seed=$WORK/seed_keys
    cp "$ROOT/target/release/portcullis" "$bin"
    cp "$ROOT/target/release/examples/seed_keys" "$seed"
    local data=$WORK/data
    mkdir -p "$data"

    local upstream_port nginx_port gateway_port redis_gateway_port redis_port
    pick_port upstream_port
    pick_port nginx_port
    pick_port gateway_port
    pick_port redis_gateway_port
    pick_port redis_port
    # Each Portcullis node needs its own metrics port, or none.
    local metrics_listen=off redis_metrics_listen=off metrics_port redis_metrics_port
    if [[ $METRICS == 1 ]]; then
        pick_port metrics_port
        pick_port redis_metrics_port
        metrics_listen=127.0.0.1:$metrics_port
        redis_metrics_listen=127.0.0.1:$redis_metrics_port
    fi

    cat >"$data/portcullis.toml" <<TOML
[server]
listen = "127.0.0.1:$gateway_port"

[metrics]
listen = "$metrics_listen"

[[routes]]
path_prefix = "/api"
upstream = "http://127.0.0.1:$upstream_port"
strip_prefix = true

[routes.scopes]
GET = ["$BENCH_SCOPE"]

[[routes]]
path_prefix = "/limited"
upstream = "http://127.0.0.1:$upstream_port"
strip_prefix = true
rate_limit = "$BENCH_RATE"

[routes.scopes]
GET = ["$BENCH_SCOPE"]
TOML

    # The CLI writes the master key and the database, so both exist before
    # the seeding tool and the server open them.
    export PORTCULLIS_DATA_DIR=$data
    log "creating tenant $TENANT, one key and an operator key"
    "$bin" tenants create "$TENANT" >/dev/null
    "$bin" --output json keys create --tenant "$TENANT" --scopes "$BENCH_SCOPE" |
        json_key >"$WORK/one.key"
    "$bin" --output json keys create --operator --scopes keys:verify |
        json_key >"$WORK/operator.key"
    [[ -s "$WORK/one.key" && -s "$WORK/operator.key" ]] || fail "could not read the created keys"

    log "seeding $KEY_COUNT keys"
    local seed_started
    seed_started=$(date +%s.%N)
    "$seed" --data-dir "$data" --tenant "$TENANT" --count "$KEY_COUNT" --out "$WORK/many.keys"
    SEED_SECONDS=$(awk -v start="$seed_started" -v end="$(date +%s.%N)" \
        'BEGIN { printf "%.1f", end - start }')

    log "starting Portcullis on 127.0.0.1:$gateway_port"
    PORTCULLIS_LOG=warn taskset -c "$SERVER_CPU" "$bin" serve >"$WORK/portcullis.log" 2>&1 &
    PIDS+=("$!")
    PORTCULLIS_PID=$!
    wait_for_port "$PORTCULLIS_PID" portcullis "$gateway_port"

    log "starting redis-server on 127.0.0.1:$redis_port"
    taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$redis_port" \
        --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    PIDS+=("$!")
    wait_for_port "$!" redis "$redis_port"

    # A second node on the same data, counting limits in Redis. Only one
    # node is under load at a time.
    log "starting Portcullis with Redis limits on 127.0.0.1:$redis_gateway_port"
    PORTCULLIS_LOG=warn PORTCULLIS_SERVER__LISTEN="127.0.0.1:$redis_gateway_port" \
        PORTCULLIS_METRICS__LISTEN="$redis_metrics_listen" \
        PORTCULLIS_REDIS_URL="redis://127.0.0.1:$redis_port" \
        taskset -c "$SERVER_CPU" "$bin" serve >"$WORK/portcullis-redis.log" 2>&1 &
    PIDS+=("$!")
    REDIS_PORTCULLIS_PID=$!
    wait_for_port "$REDIS_PORTCULLIS_PID" portcullis-redis "$redis_gateway_port"

    log "starting the upstream nginx on 127.0.0.1:$upstream_port"
    write_nginx_conf "$WORK/upstream" <<CONF
    server {
        listen 127.0.0.1:$upstream_port;
        location / {
            default_type application/json;
            return 200 '{"ok":true}';
        }
    }
CONF
    start_nginx "$WORK/upstream" upstream
    wait_for_port "$LAST_PID" upstream "$upstream_port"

    # nginx serves the certificate that Portcullis created at its first
    # start, so both do the same TLS work.
    log "starting the nginx TLS proxy on 127.0.0.1:$nginx_port"
    write_nginx_conf "$WORK/proxy" <<CONF
    upstream backend {
        server 127.0.0.1:$upstream_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$nginx_port ssl;
        ssl_certificate $data/tls/server.pem;
        ssl_certificate_key $data/tls/server-key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
CONF
    start_nginx "$WORK/proxy" proxy
    wait_for_port "$LAST_PID" proxy "$nginx_port"

    # Keys reach wrk through files, not its command line, which other users
    # can read in /proc. A script without a request() function makes wrk
    # build the request once, as it does with -H.
    cat >"$WORK/one-key.lua" <<'LUA'
function init(args)
    local file = assert(io.open(args[1]))
    wrk.headers["X-API-Key"] = file:read("*l")
    file:close()
end
LUA
    cat >"$WORK/many-keys.lua" <<'LUA'
local keys = {}
local threads = 0

-- Runs in the main Lua state once per thread, before init().
function setup(thread)
    threads = threads + 1
    thread:set("thread_number", threads)
end

function init(args)
    for line in io.lines(args[1]) do
        keys[#keys + 1] = line
    end
    -- A different sequence per thread, so threads do not send the same keys.
    math.randomseed(os.time() * 1000 + thread_number)
end

function request()
    return wrk.format(nil, nil, { ["X-API-Key"] = keys[math.random(#keys)] })
end
LUA
    cat >"$WORK/verify.lua" <<'LUA'
local function read_line(path)
    local file = assert(io.open(path))
    local line = file:read("*l")
    file:close()
    return line
end

function init(args)
    wrk.method = "POST"
    wrk.headers["Authorization"] = "Bearer " .. read_line(args[1])
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"key":"' .. read_line(args[2]) .. '"}'
end
LUA

    # curl reads these headers from files, again to keep keys off command
    # lines.
    printf '{"key":"%s"}' "$(cat "$WORK/one.key")" >"$WORK/verify-body.json"
    printf 'X-API-Key: %s\n' "$(cat "$WORK/one.key")" >"$WORK/one-key.header"
    printf 'Authorization: Bearer %s\n' "$(cat "$WORK/operator.key")" >"$WORK/operator.header"
    local gateway=https://127.0.0.1:$gateway_port
    check_response upstream '{"ok":true}' "http://127.0.0.1:$upstream_port$API_PATH"
    check_response nginx '{"ok":true}' "https://127.0.0.1:$nginx_port$API_PATH"
    check_response gateway '{"ok":true}' -H "@$WORK/one-key.header" "$gateway$API_PATH"
    local redis_gateway=https://127.0.0.1:$redis_gateway_port
    check_response memory-limit '{"ok":true}' -H "@$WORK/one-key.header" "$gateway/limited/"
    check_response redis-limit '{"ok":true}' -H "@$WORK/one-key.header" "$redis_gateway/limited/"
    # The limited route must carry the header fields, or no check ran.
    # Each response is read whole before grep checks it, because `grep -q`
    # stops at the first match and curl then fails writing into the closed
    # pipe, which fails the pipeline under pipefail.
    local headers
    headers=$(curl -sS -k -D - -o /dev/null -H "@$WORK/one-key.header" "$redis_gateway/limited/")
    grep -qi '^ratelimit-policy: "route"' <<<"$headers" ||
        fail "redis-limit: the response has no RateLimit-Policy field"
    check_response verify '"valid":true' -X POST -H "@$WORK/operator.header" \
        -H 'Content-Type: application/json' --data-binary "@$WORK/verify-body.json" \
        "$gateway/v1/keys/verify"

    RSS_IDLE=$(rss_mib "$PORTCULLIS_PID")
    LOAD_BEFORE=$(cut -d ' ' -f 1-3 /proc/loadavg)
    log "Portcullis idle RSS: $RSS_IDLE MiB"

    # The verify API runs before the many-keys runs, so that it is not
    # measured while Portcullis still writes their usage counts.
    TARGETS=(upstream nginx one-key memory-limit redis-limit verify many-keys many-keys-again)
    declare -gA TARGET_LABELS=(
        [upstream]="(a) upstream, plain HTTP"
        [nginx]="(b) nginx TLS proxy"
        [one-key]="(c) Portcullis, one key"
        [memory-limit]="(d) Portcullis, one key, route limit in memory"
        [redis-limit]="(e) Portcullis, one key, route limit in Redis"
        [verify]="verify API, one key"
        [many-keys]="(c) Portcullis, $KEY_COUNT keys"
        [many-keys-again]="(c) Portcullis, $KEY_COUNT keys, second run"
    )
    run_target upstream "http://127.0.0.1:$upstream_port$API_PATH"
    run_target nginx "https://127.0.0.1:$nginx_port$API_PATH"
    run_target one-key "$gateway$API_PATH" "$WORK/one-key.lua" "$WORK/one.key"
    run_target memory-limit "$gateway/limited/" "$WORK/one-key.lua" "$WORK/one.key"
    run_target redis-limit "$redis_gateway/limited/" "$WORK/one-key.lua" "$WORK/one.key"
    kill -0 "$REDIS_PORTCULLIS_PID" 2>/dev/null ||
        fail "Portcullis with Redis limits exited; see $WORK/portcullis-redis.log"
    run_target verify "$gateway/v1/keys/verify" "$WORK/verify.lua" \
        "$WORK/operator.key" "$WORK/one.key"
    # The first use of a key reads it from the store, so the first run
    # includes loading most keys into the cache and the second run less so.
    run_target many-keys "$gateway$API_PATH" "$WORK/many-keys.lua" "$WORK/many.keys"
    RSS_AFTER=$(rss_mib "$PORTCULLIS_PID")
    run_target many-keys-again "$gateway$API_PATH" "$WORK/many-keys.lua" "$WORK/many.keys"
    RSS_AFTER_AGAIN=$(rss_mib "$PORTCULLIS_PID")
    # With metrics on, the gateway runs must have been counted, or the
    # figures do not include the cost of recording them.
    if [[ $METRICS == 1 ]]; then
        local metrics
        metrics=$(curl -sS "http://$metrics_listen/metrics")
        grep -q '^portcullis_http_requests_total{route="gateway:/api"' <<<"$metrics" ||
            fail "the metrics of the first node count no gateway request"
    fi

    echo
    echo "## Machine"
    echo
    print_machine
    print_summary
}

main "$@"
