#!/usr/bin/env bash
# Counts the instructions that Portcullis executes per request on the
# gateway and on the verify API, with valgrind's callgrind, and writes
# one callgrind profile per target. The count in the connection tasks
# repeated within 0.5% between runs on a busy machine, where requests/s
# move by a factor of two. See BENCHMARKS.md.
#
# Usage: bench/callgrind.sh [BINARY]
#
# BINARY is a release build of portcullis (default target/release/portcullis
# under CARGO_TARGET_DIR or the repository). Build it with line tables, as
# the release profile does, so that callgrind_annotate can name lines.
#
# Settings (environment variables):
#   REQUESTS  requests measured per target (default 2000)
#   WARMUP    requests sent to each target before counting starts (default 200)
#   OUT       directory for the profiles callgrind.<target>.out (default:
#             a new temporary directory, printed at the end)
#   METRICS   1 serves metrics on a free port (default), 0 sets
#             metrics.listen = "off", and none writes no [metrics] table,
#             for builds older than that table
#
# Everything listens on 127.0.0.1 only, on free ports, and the data
# directory is a temporary directory that is removed at exit.
set -euo pipefail

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
METRICS=${METRICS:-1}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINARY=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}
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
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Stores in the variable named $1 a free port in 20000-59999.
pick_port() {
    local -n chosen=$1
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! port_open "$port"; then
            chosen=$port
            return
        fi
    done
    fail "found no free port on 127.0.0.1"
}

# Waits up to $3 seconds until process $1 accepts connections on port $2.
wait_for_port() {
    local pid=$1 port=$2 deadline=$((SECONDS + $3))
    until port_open "$port"; do
        kill -0 "$pid" 2>/dev/null || fail "process $pid exited during start; see $WORK"
        ((SECONDS < deadline)) || fail "nothing listened on port $port within $3 s"
        sleep 0.2
    done
}

# Writes a curl configuration to $1 that sends $2 requests to URL $3 on
# one kept-alive connection, with the extra curl options on standard input.
write_curl_config() {
    local file=$1 count=$2 url=$3
    {
        cat
        for _ in $(seq 1 "$count"); do
            printf 'url = "%s"\noutput = "/dev/null"\n' "$url"
        done
    } >"$file"
}

# Sends the requests of curl configuration $1 and fails unless every one
# returned status $2.
send() {
    local config=$1 expected=$2 statuses
    statuses=$(curl --config "$config" --http1.1 -s -k --max-time 600 -w '%{http_code}\n' |
        sort | uniq -c)
    [[ $(wc -l <<<"$statuses") == 1 && $statuses == *" $expected" ]] ||
        fail "expected only status $expected from $config, got: $statuses"
}

main() {
    trap cleanup EXIT
    command -v valgrind >/dev/null || fail "valgrind is missing; install Debian's valgrind package"
    command -v callgrind_control >/dev/null || fail "callgrind_control is missing (valgrind package)"
    local nginx
    nginx=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $nginx ]] || fail "nginx is missing; install Debian's nginx package"
    [[ -x $BINARY ]] || fail "$BINARY is not an executable; build it with cargo build --release"
    [[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || fail "REQUESTS must be a positive number, not $REQUESTS"
    [[ $WARMUP =~ ^[0-9]+$ ]] || fail "WARMUP must be a number, not $WARMUP"
    [[ $METRICS == 0 || $METRICS == 1 || $METRICS == none ]] ||
        fail "METRICS must be 0, 1 or none, not $METRICS"

    WORK=$(mktemp -d -t portcullis-callgrind.XXXXXX)
    local out=${OUT:-$(mktemp -d -t portcullis-profiles.XXXXXX)}
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    umask 077
    local data=$WORK/data
    mkdir -p "$data"

    local upstream_port gateway_port metrics_port
    pick_port upstream_port
    pick_port gateway_port
    pick_port metrics_port
    local metrics_table=
    case $METRICS in
        1) metrics_table=$'[metrics]\nlisten = "127.0.0.1:'"$metrics_port"$'"\n' ;;
        0) metrics_table=$'[metrics]\nlisten = "off"\n' ;;
    esac
    # The route of bench/gateway.sh's target (c).
    cat >"$data/portcullis.toml" <<TOML
[server]
listen = "127.0.0.1:$gateway_port"

$metrics_table
[[routes]]
path_prefix = "/api"
upstream = "http://127.0.0.1:$upstream_port"
strip_prefix = true

[routes.scopes]
GET = ["bench:read"]
TOML

    export PORTCULLIS_DATA_DIR=$data
    "$BINARY" tenants create bench >/dev/null
    local tenant_key operator_key
    tenant_key=$("$BINARY" --output json keys create --tenant bench --scopes bench:read |
        sed -n 's/.*"key"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    operator_key=$("$BINARY" --output json keys create --operator --scopes keys:verify |
        sed -n 's/.*"key"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
    [[ -n $tenant_key && -n $operator_key ]] || fail "could not read the created keys"

    mkdir -p "$WORK/upstream"
    cat >"$WORK/upstream/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/upstream/body;
    proxy_temp_path $WORK/upstream/proxy;
    fastcgi_temp_path $WORK/upstream/fastcgi;
    uwsgi_temp_path $WORK/upstream/uwsgi;
    scgi_temp_path $WORK/upstream/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$upstream_port;
        location / {
            default_type application/json;
            return 200 '{"ok":true}';
        }
    }
}
CONF
    "$nginx" -p "$WORK/upstream" -e "$WORK/upstream/error.log" -c "$WORK/upstream/nginx.conf" \
        >"$WORK/upstream.log" 2>&1 &
    PIDS+=("$!")
    wait_for_port "$!" "$upstream_port" 20

    log "starting $BINARY under callgrind"
    PORTCULLIS_LOG=warn valgrind --tool=callgrind --collect-atstart=yes \
        --callgrind-out-file="$WORK/callgrind.%p.out" "$BINARY" serve >"$WORK/portcullis.log" 2>&1 &
    PIDS+=("$!")
    local server=$!
    wait_for_port "$server" "$gateway_port" 300

    # Keys reach curl through configuration files, not its command line.
    local gateway=https://127.0.0.1:$gateway_port
    local target count
    for target in gateway verify; do
        for count in warmup measured; do
            local requests=$REQUESTS
            [[ $count == warmup ]] && requests=$WARMUP
            if [[ $target == gateway ]]; then
                write_curl_config "$WORK/$target-$count.curl" "$requests" "$gateway/api/" <<CURL
header = "X-API-Key: $tenant_key"
CURL
            else
                write_curl_config "$WORK/$target-$count.curl" "$requests" \
                    "$gateway/v1/keys/verify" <<CURL
header = "Authorization: Bearer $operator_key"
header = "Content-Type: application/json"
data-binary = "{\"key\":\"$tenant_key\"}"
CURL
            fi
        done
    done

    for target in gateway verify; do
        if ((WARMUP > 0)); then
            log "$target: $WARMUP requests of warm-up"
            send "$WORK/$target-warmup.curl" 200
        fi
        callgrind_control --zero "$server" >/dev/null
        log "$target: $REQUESTS requests counted"
        send "$WORK/$target-measured.curl" 200
        callgrind_control --dump="$target" "$server" >/dev/null
        # Find the file of this dump by the description it was given.
        local profile
        for _ in $(seq 1 100); do
            profile=$(grep -l "^desc: Trigger: dump $target\$" "$WORK"/callgrind.*.out* \
                2>/dev/null | head -n 1 || true)
            [[ -n $profile ]] && break
            sleep 0.2
        done
        [[ -n $profile ]] || fail "callgrind wrote no profile for $target"
        mv "$profile" "$out/callgrind.$target.out"
    done

    echo "profiles in $out"
    echo "| target | requests | all instructions per request | in connection tasks per request |"
    echo "| --- | ---: | ---: | ---: |"
    for target in gateway verify; do
        local total connections
        total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$out/callgrind.$target.out")
        connections=$(connection_instructions "$out/callgrind.$target.out")
        printf '| %s | %s | %s | %s |\n' "$target" "$REQUESTS" $((total / REQUESTS)) \
            $((connections / REQUESTS))
    done
}

# Prints the instructions spent in the tasks that serve connections: the
# listener's task per client connection and hyper's task per upstream
# connection, callees included. Background tasks (the change feed, the
# usage flush) run by the clock, not per request, and run longer under
# valgrind, so this figure repeats where the whole program total does not.
# callgrind_annotate groups costs by source file names, which it resolves
# from the working directory, so it runs from / for figures that do not
# depend on where the script was started.
connection_instructions() {
    (cd / && callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$1") |
        awk '
            /:portcullis_server::listener::handle_connection::\{\{closure\}\} \[/ ||
            /<hyper::client::conn::http1::upgrades::UpgradeableConnection<I,B> as core::future::future::Future>::poll \[/ {
                count = $1
                gsub(",", "", count)
                sum += count
            }
            END { print sum + 0 }'
}

main "$@"
