#!/usr/bin/env bash
# Load benchmark of Portcullis's OAuth token endpoint (client_credentials,
# ES256 and RS256) and of its gateway with a cached JWT, side by side with
# npm oidc-provider and a jose resource server in the same run. See
# BENCHMARKS.md.
#
# Usage: bench/oauth.sh
#
# Settings (environment variables):
#   DURATION     length of each measured wrk run (default 20s)
#   WARMUP       length of the wrk run before each measured run (default 5s)
#   CONNECTIONS  open connections per run (default 32)
#   THREADS      wrk threads (default 1)
#   SERVER_CPU   CPU the servers are pinned to (default 0)
#   LOAD_CPU     CPU wrk is pinned to (default 1)
#   SKIP_BUILD   set to 1 to use the binary already in target/release
#
# Everything listens on 127.0.0.1 only, on free ports picked at start, and
# all state lives in a temporary directory that is removed at exit. npm
# installs the pinned oidc-provider and jose into that directory first.
set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}

# Seconds a server gets to start listening before the script gives up.
readonly START_TIMEOUT=60
# Path every gateway target serves; Portcullis strips /api before proxying.
readonly API_PATH=/api/
# The resource server that every token is issued for.
readonly AUDIENCE=https://api.example.test
# Scope that the clients hold, the tokens carry and the routes require.
readonly BENCH_SCOPE=orders:read
readonly TENANT=bench
readonly ALGORITHMS=(ES256 RS256)
# oidc-provider 8.8.1 accepts Node.js 18 and later (9.x requires 22), and the
# benchmark was run on 20 only.
readonly MIN_NODE_MAJOR=20

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

# Installs nginx, wrk, curl, Node.js and npm from the distribution when one
# is missing.
install_tools() {
    if command -v wrk >/dev/null && command -v curl >/dev/null && find_nginx >/dev/null &&
        command -v node >/dev/null && command -v npm >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null ||
        fail "nginx, wrk, curl, node or npm is missing and apt-get is not available; install them"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || fail "nginx, wrk, curl, node or npm is missing; run as root or install them"
        sudo=(sudo)
    fi
    log "installing nginx, wrk, curl, nodejs and npm with apt-get"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk curl nodejs npm >/dev/null
}

check_node_version() {
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    ((major >= MIN_NODE_MAJOR)) ||
        fail "Node.js $(node --version) is too old; oidc-provider and jose need $MIN_NODE_MAJOR or later"
}

# Prints the path of the nginx binary, which Debian puts in /usr/sbin.
find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

# Returns success when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a port in 20000-59999 that nothing listens on and that this run has
# not handed out yet. Another process may still take it before the server
# binds it, and then that server fails to start with its own error message.
USED_PORTS=()
pick_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if [[ " ${USED_PORTS[*]} " != *" $port "* ]] && ! port_open "$port"; then
            USED_PORTS+=("$port")
            echo "$port"
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
# response body contains $2. $1 names the target in the message.
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

# Prints the CPUs that process $1 may run on and its thread count.
cpus_and_threads() {
    awk '/^Cpus_allowed_list:/ { cpus = $2 } /^Threads:/ { threads = $2 }
        END { printf "CPU %s, %s threads", cpus, threads }' "/proc/$1/status"
}

# Writes an nginx configuration for one server with one worker to $1, with
# the server block read from standard input.
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
    keepalive_requests 1000000;
CONF
        cat
        echo "}"
    } >"$prefix/nginx.conf"
}

# Prints the value of the string member $1 of the JSON object on standard
# input.
json_field() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" | head -n 1
}

# Prints the `alg` of the JWT in file $1, read from its header.
jwt_alg() {
    local header
    header=$(cut -d . -f 1 "$1" | tr '_-' '/+')
    while ((${#header} % 4 != 0)); do
        header+="="
    done
    base64 -d <<<"$header" | json_field alg
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

# Runs wrk for target $1 against URL $2 with the Lua script $3 and the script
# arguments after it: a warm-up run, then the measured run, whose output is
# kept in $WORK/wrk-$1.txt. Fails when the server $SERVER_UNDER_TEST exits.
# Sets RESULT_*[$1].
declare -A RESULT_RPS RESULT_P50 RESULT_P99 RESULT_ERRORS
run_target() {
    local target=$1 url=$2 script=$3
    shift 3
    local wrk=(taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" --timeout 5s --latency -s "$script")
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
    kill -0 "$SERVER_UNDER_TEST" 2>/dev/null ||
        fail "the server of the $target run exited; see the logs in $WORK"
}

# Prints a ratio of two requests/s figures with two decimals.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'
}

# Writes the wrk scripts. Secrets and tokens reach wrk through files, not
# its command line, which other users can read in /proc. A script without a
# request() function makes wrk build the request once.
write_lua_scripts() {
    cat >"$WORK/token.lua" <<'LUA'
local function read_line(path)
    local file = assert(io.open(path))
    local line = file:read("*l")
    file:close()
    return line
end

-- args[1]: file with the Authorization header value; args[2]: file with the
-- form body.
function init(args)
    wrk.method = "POST"
    wrk.headers["Authorization"] = read_line(args[1])
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
    wrk.body = read_line(args[2])
end
LUA
    cat >"$WORK/bearer.lua" <<'LUA'
-- args[1]: file with the access token.
function init(args)
    local file = assert(io.open(args[1]))
    wrk.headers["Authorization"] = "Bearer " .. file:read("*l")
    file:close()
end
LUA
}

# Writes the Basic header value of client $2 with secret $3 to file $1.
# RFC 6749 section 2.3.1 form-encodes both parts first, which leaves the ids
# and secrets used here unchanged, so this skips that step.
write_basic_header() {
    printf 'Basic %s\n' "$(printf '%s:%s' "$2" "$3" | base64 -w 0)" >"$1"
}

# Starts Portcullis for algorithm $1 with its own data dir and creates one
# client. Sets PORTCULLIS_PORT[$1] and PORTCULLIS_PIDS[$1], and writes the
# client's Basic header to $WORK/portcullis-$1.basic.
declare -A PORTCULLIS_PORT PORTCULLIS_PIDS
start_portcullis() {
    local alg=$1
    local data=$WORK/data-$alg port
    port=$(pick_port)
    mkdir -p "$data"
    cat >"$data/portcullis.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[oauth]
signing_algorithm = "$alg"

[[routes]]
path_prefix = "/api"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
strip_prefix = true
auth = ["jwt"]
audience = "$AUDIENCE"

[routes.scopes]
GET = ["$BENCH_SCOPE"]
TOML

    log "creating tenant $TENANT and a client_credentials client for $alg"
    PORTCULLIS_DATA_DIR=$data "$BIN" tenants create "$TENANT" >/dev/null
    PORTCULLIS_DATA_DIR=$data "$BIN" --output json clients create --tenant "$TENANT" \
        --name "bench $alg" --grant-types client_credentials --scopes "$BENCH_SCOPE" \
        >"$WORK/client-$alg.json"
    local client_id client_secret
    client_id=$(json_field client_id <"$WORK/client-$alg.json")
    client_secret=$(json_field client_secret <"$WORK/client-$alg.json")
    [[ -n $client_id && -n $client_secret ]] || fail "could not read the client created for $alg"
    write_basic_header "$WORK/portcullis-$alg.basic" "$client_id" "$client_secret"

    log "starting Portcullis ($alg) on 127.0.0.1:$port"
    PORTCULLIS_DATA_DIR=$data PORTCULLIS_LOG=warn taskset -c "$SERVER_CPU" "$BIN" serve \
        >"$WORK/portcullis-$alg.log" 2>&1 &
    PIDS+=("$!")
    PORTCULLIS_PIDS[$alg]=$!
    PORTCULLIS_PORT[$alg]=$port
    wait_for_port "$!" "portcullis-$alg" "$port"
}

# Starts oidc-provider signing with algorithm $1 and the jose verifier for
# its tokens. Sets OIDC_PORT[$1], OIDC_PIDS[$1], VERIFIER_PORT[$1] and
# VERIFIER_PIDS[$1], and writes the client's Basic header to
# $WORK/oidc-$1.basic.
declare -A OIDC_PORT OIDC_PIDS VERIFIER_PORT VERIFIER_PIDS
start_oidc_provider() {
    local alg=$1
    local oidc_port verifier_port
    oidc_port=$(pick_port)
    verifier_port=$(pick_port)
    local client_id=bench-$alg
    # 256 random bits as 43 URL-safe base64 characters.
    head -c 32 /dev/urandom | base64 -w 0 | tr '+/' '-_' | tr -d '=' >"$WORK/oidc-$alg.secret"
    echo >>"$WORK/oidc-$alg.secret"
    write_basic_header "$WORK/oidc-$alg.basic" "$client_id" "$(cat "$WORK/oidc-$alg.secret")"

    log "starting oidc-provider ($alg) on 127.0.0.1:$oidc_port"
    (
        cd "$WORK/oidc-provider"
        OIDC_PORT=$oidc_port OIDC_ALG=$alg OIDC_AUDIENCE=$AUDIENCE OIDC_SCOPE=$BENCH_SCOPE \
            OIDC_CLIENT_ID=$client_id OIDC_CLIENT_SECRET_FILE=$WORK/oidc-$alg.secret \
            TLS_CERT=$TLS_CERT TLS_KEY=$TLS_KEY NODE_ENV=production \
            exec taskset -c "$SERVER_CPU" node server.mjs
    ) >"$WORK/oidc-$alg.log" 2>&1 &
    PIDS+=("$!")
    OIDC_PIDS[$alg]=$!
    OIDC_PORT[$alg]=$oidc_port
    wait_for_port "$!" "oidc-$alg" "$oidc_port"

    log "starting the jose verifier ($alg) on 127.0.0.1:$verifier_port"
    (
        cd "$WORK/oidc-provider"
        VERIFIER_PORT=$verifier_port VERIFIER_ISSUER=https://127.0.0.1:$oidc_port \
            VERIFIER_AUDIENCE=$AUDIENCE VERIFIER_ALG=$alg VERIFIER_SCOPE=$BENCH_SCOPE \
            TLS_CERT=$TLS_CERT TLS_KEY=$TLS_KEY NODE_EXTRA_CA_CERTS=$TLS_CA NODE_ENV=production \
            exec taskset -c "$SERVER_CPU" node verifier.mjs
    ) >"$WORK/verifier-$alg.log" 2>&1 &
    PIDS+=("$!")
    VERIFIER_PIDS[$alg]=$!
    VERIFIER_PORT[$alg]=$verifier_port
    wait_for_port "$!" "verifier-$alg" "$verifier_port"
}

# Requests one token with the Basic header in file $2 and the form in
# $WORK/token-form.txt from URL $3, writes it to file $4, and checks that it
# is signed with $1. Also the check of each token endpoint before its run.
fetch_token() {
    local alg=$1 basic=$2 url=$3 out=$4
    local response
    # curl reads whole header lines from a file, so the value gets its name.
    printf 'Authorization: %s\n' "$(cat "$basic")" >"$basic.header"
    # --data strips the form file's newline.
    response=$(curl -sS -k --max-time 10 -H "@$basic.header" \
        -H 'Content-Type: application/x-www-form-urlencoded' \
        --data "@$WORK/token-form.txt" "$url" 2>&1) ||
        fail "token request to $url failed: $response"
    json_field access_token <<<"$response" >"$out"
    [[ -s $out ]] || fail "no access_token from $url: $response"
    local signed_with
    signed_with=$(jwt_alg "$out")
    [[ $signed_with == "$alg" ]] || fail "the token from $url is signed with $signed_with, expected $alg"
}

print_machine() {
    echo "- CPUs: $(nproc), $(lscpu | sed -n 's/^Model name:[[:space:]]*//p')"
    echo "- memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- wrk: $(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
    echo "- nginx (upstream): $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
    echo "- rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "- Node.js: $(node --version)"
    local package
    for package in oidc-provider jose; do
        echo "- $package: $(node -p "require('$WORK/oidc-provider/node_modules/$package/package.json').version")"
    done
    echo "- Portcullis: commit $REVISION"
    echo "- load average before the runs: $LOAD_BEFORE"
}

print_row() {
    local target=$1 label=$2
    printf '| %s | %s | %s | %s | %s |\n' "$label" "${RESULT_RPS[$target]}" \
        "${RESULT_P50[$target]}" "${RESULT_P99[$target]}" "${RESULT_ERRORS[$target]}"
}

print_summary() {
    local alg
    echo
    echo "## Results"
    echo
    echo "wrk: $THREADS thread(s), $CONNECTIONS connections, $DURATION per run after a $WARMUP warm-up;"
    echo "servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU; Portcullis with PORTCULLIS_LOG=warn."
    echo
    echo "| target | requests/s | p50 ms | p99 ms | errors |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for alg in "${ALGORITHMS[@]}"; do
        print_row "token-portcullis-$alg" "token endpoint, Portcullis, $alg"
        print_row "token-oidc-$alg" "token endpoint, oidc-provider, $alg"
    done

    for alg in "${ALGORITHMS[@]}"; do
        print_row "gateway-portcullis-$alg" "cached JWT, Portcullis gateway, $alg"
        print_row "gateway-jose-$alg" "cached JWT, jose verifier, $alg"
    done

    echo
    echo "| ratio of requests/s, Portcullis / peer | ES256 | RS256 |"
    echo "| --- | ---: | ---: |"
    printf '| token endpoint / oidc-provider |'
    for alg in "${ALGORITHMS[@]}"; do
        printf ' %s |' "$(ratio "${RESULT_RPS[token-portcullis-$alg]}" "${RESULT_RPS[token-oidc-$alg]}")"
    done
    echo
    printf '| gateway / jose verifier |'
    for alg in "${ALGORITHMS[@]}"; do
        printf ' %s |' "$(ratio "${RESULT_RPS[gateway-portcullis-$alg]}" "${RESULT_RPS[gateway-jose-$alg]}")"
    done

    echo
    echo
    echo "Processes after the runs (resident memory, allowed CPUs, threads):"
    echo
    for alg in "${ALGORITHMS[@]}"; do
        echo "- Portcullis $alg: $(rss_mib "${PORTCULLIS_PIDS[$alg]}") MiB, $(cpus_and_threads "${PORTCULLIS_PIDS[$alg]}")"
        echo "- oidc-provider $alg: $(rss_mib "${OIDC_PIDS[$alg]}") MiB, $(cpus_and_threads "${OIDC_PIDS[$alg]}")"
        echo "- jose verifier $alg: $(rss_mib "${VERIFIER_PIDS[$alg]}") MiB, $(cpus_and_threads "${VERIFIER_PIDS[$alg]}")"
    done
    echo "- upstream nginx: $(rss_mib "$UPSTREAM_PID") MiB, $(cpus_and_threads "$UPSTREAM_PID")"
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    if (($(nproc) < 2)); then
        log "WARNING: only one CPU; servers and wrk share it"
    fi
    install_tools
    check_node_version
    NGINX=$(find_nginx)

    # Read before the build, so that it names the tree the binary is built
    # from. With SKIP_BUILD=1 the binary may be older.
    REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then
        REVISION="$REVISION with uncommitted changes"
    fi
    if [[ $SKIP_BUILD == 1 ]]; then
        REVISION="$REVISION (SKIP_BUILD=1: the binary in target/release may be older)"
    else
        log "building the release binary"
        (cd "$ROOT" && cargo build --release -q -p portcullis --bin portcullis)
    fi

    WORK=$(mktemp -d -t portcullis-oauth-bench.XXXXXX)
    # Client secrets and master keys are written below, so new files are
    # private.
    umask 077
    # A copy, so that a build started elsewhere during the run cannot replace
    # the binary under test.
    BIN=$WORK/portcullis
    cp "$ROOT/target/release/portcullis" "$BIN"

    log "installing oidc-provider and jose with npm ci"
    mkdir -p "$WORK/oidc-provider"
    cp "$ROOT"/bench/oidc-provider/{package.json,package-lock.json,server.mjs,verifier.mjs} \
        "$WORK/oidc-provider/"
    (cd "$WORK/oidc-provider" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
        fail "npm ci failed in $WORK/oidc-provider"

    UPSTREAM_PORT=$(pick_port)
    log "starting the upstream nginx on 127.0.0.1:$UPSTREAM_PORT"
    write_nginx_conf "$WORK/upstream" <<CONF
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{"ok":true}';
        }
    }
CONF
    "$NGINX" -t -q -p "$WORK/upstream" -e "$WORK/upstream/error.log" -c "$WORK/upstream/nginx.conf" ||
        fail "invalid nginx configuration $WORK/upstream/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/upstream" -e "$WORK/upstream/error.log" \
        -c "$WORK/upstream/nginx.conf" >"$WORK/upstream.log" 2>&1 &
    PIDS+=("$!")
    UPSTREAM_PID=$!
    wait_for_port "$UPSTREAM_PID" upstream "$UPSTREAM_PORT"

    local alg
    for alg in "${ALGORITHMS[@]}"; do
        start_portcullis "$alg"
    done
    # Node serves the certificate that Portcullis created at its first start
    # (ECDSA P-256), so every server does the same TLS work.
    TLS_CERT=$WORK/data-ES256/tls/server.pem
    TLS_KEY=$WORK/data-ES256/tls/server-key.pem
    TLS_CA=$WORK/data-ES256/tls/ca.pem
    for alg in "${ALGORITHMS[@]}"; do
        start_oidc_provider "$alg"
    done

    write_lua_scripts
    # Every token endpoint gets the same form. Only "/" and ":" of its
    # values need percent-encoding.
    printf 'grant_type=client_credentials&scope=%s&resource=%s\n' \
        "${BENCH_SCOPE//:/%3A}" "$(sed 's/:/%3A/g; s#/#%2F#g' <<<"$AUDIENCE")" >"$WORK/token-form.txt"

    # One token per server and algorithm, fetched now and reused by every
    # request of its gateway run. Each is valid for 15 minutes, longer than
    # the whole run.
    for alg in "${ALGORITHMS[@]}"; do
        fetch_token "$alg" "$WORK/portcullis-$alg.basic" \
            "https://127.0.0.1:${PORTCULLIS_PORT[$alg]}/oauth/token" "$WORK/portcullis-$alg.jwt"
        fetch_token "$alg" "$WORK/oidc-$alg.basic" \
            "https://127.0.0.1:${OIDC_PORT[$alg]}/token" "$WORK/oidc-$alg.jwt"
        printf 'Authorization: Bearer %s\n' "$(cat "$WORK/portcullis-$alg.jwt")" >"$WORK/portcullis-$alg.header"
        printf 'Authorization: Bearer %s\n' "$(cat "$WORK/oidc-$alg.jwt")" >"$WORK/oidc-$alg.header"
        check_response "gateway-portcullis-$alg" '{"ok":true}' -H "@$WORK/portcullis-$alg.header" \
            "https://127.0.0.1:${PORTCULLIS_PORT[$alg]}$API_PATH"
        check_response "gateway-jose-$alg" '{"ok":true}' -H "@$WORK/oidc-$alg.header" \
            "https://127.0.0.1:${VERIFIER_PORT[$alg]}$API_PATH"
    done

    LOAD_BEFORE=$(cut -d ' ' -f 1-3 /proc/loadavg)
    for alg in "${ALGORITHMS[@]}"; do
        SERVER_UNDER_TEST=${PORTCULLIS_PIDS[$alg]}
        run_target "token-portcullis-$alg" "https://127.0.0.1:${PORTCULLIS_PORT[$alg]}/oauth/token" \
            "$WORK/token.lua" "$WORK/portcullis-$alg.basic" "$WORK/token-form.txt"
        SERVER_UNDER_TEST=${OIDC_PIDS[$alg]}
        run_target "token-oidc-$alg" "https://127.0.0.1:${OIDC_PORT[$alg]}/token" \
            "$WORK/token.lua" "$WORK/oidc-$alg.basic" "$WORK/token-form.txt"
    done
    for alg in "${ALGORITHMS[@]}"; do
        SERVER_UNDER_TEST=${PORTCULLIS_PIDS[$alg]}
        run_target "gateway-portcullis-$alg" "https://127.0.0.1:${PORTCULLIS_PORT[$alg]}$API_PATH" \
            "$WORK/bearer.lua" "$WORK/portcullis-$alg.jwt"
        SERVER_UNDER_TEST=${VERIFIER_PIDS[$alg]}
        run_target "gateway-jose-$alg" "https://127.0.0.1:${VERIFIER_PORT[$alg]}$API_PATH" \
            "$WORK/bearer.lua" "$WORK/oidc-$alg.jwt"
    done

    echo
    echo "## Machine"
    echo
    print_machine
    print_summary
}

main "$@"
