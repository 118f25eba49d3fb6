#!/usr/bin/env bash
# TLS handshake benchmark of one Portcullis listener with client
# certificates set to "optional": handshakes per second without a client
# certificate, with one from the internal CA, and resumed with one, all in
# the same run against the same process. See BENCHMARKS.md.
#
# Usage: bench/mtls.sh
#
# Settings (environment variables):
#   DURATION     length of each measured batch in whole seconds, like 20s
#                (default 20s)
#   WARMUP       length of the batch before each measured batch (default 5s)
#   TASKS        connections the rustls client keeps open at once (default 32)
#   CLIENTS      openssl s_time processes run in parallel (default 8)
#   TLS_VERSION  1.3 or 1.2, the only version the clients offer (default
#                1.3). Resumption uses session tickets with 1.3 and session
#                ids with 1.2.
#   SERVER_CPU   CPU Portcullis is pinned to (default 0)
#   LOAD_CPU     CPU the clients are pinned to (default 1)
#   SKIP_BUILD   set to 1 to use the binaries already in the target directory
#
# Two clients load the server in turn: the example
# crates/portcullis/examples/tls_handshakes.rs (rustls), and Debian's
# `openssl s_time`, which spends more CPU time per handshake than the
# server and so cannot keep it busy from one CPU. Each connection makes one
# handshake, sends one GET /healthz request, reads the response until the
# server closes, and closes. Portcullis listens on 127.0.0.1 only, on a
# free port picked at start, and all state lives in a temporary directory
# that is removed at exit.
set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
TASKS=${TASKS:-32}
CLIENTS=${CLIENTS:-8}
TLS_VERSION=${TLS_VERSION:-1.3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}

# Seconds the server gets to start listening before the script gives up.
readonly START_TIMEOUT=60
# The request of every connection. Its handler reads nothing from the store.
readonly REQUEST_PATH=/healthz
readonly TENANT=bench
readonly TARGETS=(server-only full-mtls resumed-mtls)
readonly TOOLS=(rustls openssl)
declare -A TOOL_LABELS=([rustls]="rustls client" [openssl]="openssl s_time")
declare -A TARGET_LABELS=(
    [server-only]="server-only TLS, no client certificate"
    [full-mtls]="full mutual TLS"
    [resumed-mtls]="resumed mutual TLS"
)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=
PIDS=()
CLIENT_PIDS=()

log() {
    printf '==> %s\n' "$*" >&2
}

fail() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local pid
    for pid in "${CLIENT_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Give the server two seconds to drain, then kill it.
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

# Installs the openssl command line tool from the distribution when it is
# missing.
install_tools() {
    if command -v openssl >/dev/null && command -v taskset >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null ||
        fail "openssl or taskset is missing and apt-get is not available; install them"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || fail "openssl or taskset is missing; run as root or install them"
        sudo=(sudo)
    fi
    log "installing openssl and util-linux (taskset) with apt-get"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl util-linux >/dev/null
}

# Returns success when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a port in 20000-59999 that nothing listens on. Another process may
# still take it before the server binds it, and then the server fails to
# start with its own error message.
pick_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! port_open "$port"; then
            echo "$port"
            return
        fi
    done
    fail "found no free port on 127.0.0.1"
}

# Waits until process $1 accepts connections on port $2, and fails when it
# exits or times out.
wait_for_port() {
    local pid=$1 port=$2
    local deadline=$((SECONDS + START_TIMEOUT))
    until port_open "$port"; do
        kill -0 "$pid" 2>/dev/null || fail "Portcullis exited during start; see $WORK/portcullis.log"
        ((SECONDS < deadline)) || fail "Portcullis did not listen on port $port within ${START_TIMEOUT}s"
        sleep 0.1
    done
}

json_field() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" | head -n 1
}

# Prints the CPU time that process $1 and all its threads used so far, in
# clock ticks (user plus system time, fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
    # The command name in field 2 may contain spaces, so the fields are
    # counted from the closing parenthesis after it.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Stores in CHILDREN_CPU the CPU time, in seconds, that the finished child
# processes of this shell used so far (user plus system time). The builtin
# times runs in this shell, not in a command substitution, because a
# subshell reports its own children only.
read_children_cpu() {
    times >"$WORK/times.txt"
    CHILDREN_CPU=$(awk 'NR == 2 {
        seconds = 0
        for (i = 1; i <= 2; i++) {
            split($i, part, "m")
            seconds += part[1] * 60 + part[2]
        }
        print seconds
    }' "$WORK/times.txt")
}

# Prints the tls_handshakes arguments of target $1 after --seconds.
rustls_args() {
    local args=(--tls "$TLS_VERSION" --tasks "$TASKS" --server-cert "$WORK/data/tls/server.pem")
    case $1 in
        server-only) ;;
        full-mtls) args+=(--cert "$WORK/client/cert.pem" --key "$WORK/client/key.pem") ;;
        resumed-mtls) args+=(--resume --cert "$WORK/client/cert.pem" --key "$WORK/client/key.pem") ;;
        *) fail "unknown target $1" ;;
    esac
    printf '%s\n' "${args[@]}"
}

# Runs the rustls client with the arguments of target $1 for $2 seconds,
# with its output in $3.out and $3.err. Sets BATCH_SECONDS,
# BATCH_CONNECTIONS, BATCH_RESUMED and BATCH_ERRORS.
run_rustls_batch() {
    local target=$1 seconds=$2 prefix=$3
    local args
    mapfile -t args < <(rustls_args "$target")
    BATCH_FAILED=0
    timeout $((seconds + 30)) taskset -c "$LOAD_CPU" "$WORK/tls_handshakes" \
        --connect "127.0.0.1:$PORT" --seconds "$seconds" "${args[@]}" \
        >"$prefix.out" 2>"$prefix.err" || BATCH_FAILED=1
    BATCH_SECONDS=$(awk '$1 == "seconds" { print $2 }' "$prefix.out")
    BATCH_CONNECTIONS=$(awk '$1 == "connections" { print $2 }' "$prefix.out")
    BATCH_RESUMED=$(awk '$1 == "resumed" { print $2 }' "$prefix.out")
    BATCH_ERRORS=$(awk '$1 == "errors" { print $2 }' "$prefix.out")
    if [[ -z $BATCH_SECONDS || -z $BATCH_CONNECTIONS ]]; then
        cat "$prefix.err" >&2
        fail "$target: the rustls client printed no figures"
    fi
    BATCH_ERRORS=$((BATCH_ERRORS + BATCH_FAILED))
}

# Prints the s_time arguments of target $1 after -connect.
s_time_args() {
    local args=(-www "$REQUEST_PATH" "-tls${TLS_VERSION/./_}")
    case $1 in
        server-only) args+=(-new) ;;
        full-mtls) args+=(-new -cert "$WORK/client/cert.pem" -key "$WORK/client/key.pem") ;;
        resumed-mtls) args+=(-reuse -cert "$WORK/client/cert.pem" -key "$WORK/client/key.pem") ;;
        *) fail "unknown target $1" ;;
    esac
    printf '%s\n' "${args[@]}"
}

# Runs $CLIENTS s_time processes of target $1 in parallel for $2 seconds,
# with their output in $3-N.out and $3-N.err. Sets BATCH_SECONDS to the
# wall time of the batch and BATCH_FAILED to the count of processes that
# exited with an error.
run_openssl_batch() {
    local target=$1 seconds=$2 prefix=$3
    local args
    mapfile -t args < <(s_time_args "$target")
    local started i
    started=$(date +%s.%N)
    CLIENT_PIDS=()
    for ((i = 1; i <= CLIENTS; i++)); do
        # s_time stops starting connections after the given time, so the
        # bound only catches a client that hangs.
        timeout $((seconds + 30)) taskset -c "$LOAD_CPU" openssl s_time \
            -connect "127.0.0.1:$PORT" -time "$seconds" "${args[@]}" \
            >"$prefix-$i.out" 2>"$prefix-$i.err" &
        CLIENT_PIDS+=("$!")
    done
    BATCH_FAILED=0
    for i in "${!CLIENT_PIDS[@]}"; do
        wait "${CLIENT_PIDS[$i]}" || BATCH_FAILED=$((BATCH_FAILED + 1))
    done
    CLIENT_PIDS=()
    BATCH_SECONDS=$(awk -v start="$started" -v end="$(date +%s.%N)" 'BEGIN { print end - start }')
}

# Prints "CONNECTIONS RESUMED BYTES" summed over the s_time outputs
# $1-*.out. s_time prints one character per timed connection: "r" when the
# session was resumed, "*" for a new TLS 1.2 or 1.3 session. BYTES is the
# total of the response bytes read.
count_connections() {
    cat "$1"-*.out | awk '
        /^[*rt3]+$/ {
            connections += length($0)
            resumed += gsub(/r/, "")
        }
        /connections in .*bytes read [0-9]+$/ { bytes += $NF }
        END { printf "%d %d %d\n", connections, resumed, bytes }'
}

# Runs target $1 once for one second and checks that every connection read
# a response. Sets RESPONSE_BYTES to the size of one response.
check_target() {
    local target=$1
    run_openssl_batch "$target" 1 "$WORK/check-$target"
    local connections resumed bytes
    read -r connections resumed bytes < <(count_connections "$WORK/check-$target")
    if ((BATCH_FAILED > 0 || connections == 0 || bytes == 0 || bytes % connections != 0)); then
        cat "$WORK/check-$target"-*.err >&2
        fail "$target: $connections connections read $bytes bytes of responses in the check run"
    fi
    RESPONSE_BYTES=$((bytes / connections))
}

# Checks that the listener requests client certificates: openssl s_client
# prints the signature algorithms of a CertificateRequest only when the
# server sent one.
check_certificate_request() {
    openssl s_client -connect "127.0.0.1:$PORT" "-tls${TLS_VERSION/./_}" </dev/null 2>&1 |
        grep -q '^Requested Signature Algorithms:' ||
        fail "the listener sent no CertificateRequest; it does not ask for client certificates"
}

# Runs s_time for target $1 for $2 seconds with the output files under
# prefix $3. Sets the same BATCH_* variables as run_rustls_batch.
run_openssl_measured() {
    local target=$1 seconds=$2 prefix=$3
    run_openssl_batch "$target" "$seconds" "$prefix"
    local bytes
    read -r BATCH_CONNECTIONS BATCH_RESUMED bytes < <(count_connections "$prefix")
    # A connection that read a short response or none.
    local short=$(((BATCH_CONNECTIONS * RESPONSE_BYTES - bytes) / RESPONSE_BYTES))
    BATCH_ERRORS=$((BATCH_FAILED + short))
}

# Runs target $1 with client $2: a warm-up batch, then the measured batch
# with the CPU time of the server and of the client read before and after.
# Sets RESULT_*[$2,$1].
declare -A RESULT_RATE RESULT_CONNECTIONS RESULT_RESUMED RESULT_CPU_US RESULT_CPU_SHARE \
    RESULT_CLIENT_SHARE RESULT_ERRORS
run_target() {
    local target=$1 tool=$2
    local key=$tool,$target prefix=$WORK/$tool-$target
    log "$target with $tool: warm-up $WARMUP, then $DURATION"
    if [[ $tool == rustls ]]; then
        run_rustls_batch "$target" "${WARMUP%s}" "$prefix-warmup"
    else
        run_openssl_batch "$target" "${WARMUP%s}" "$prefix-warmup"
    fi

    local ticks_before ticks_after client_before client_after
    ticks_before=$(cpu_ticks "$PORTCULLIS_PID")
    read_children_cpu
    client_before=$CHILDREN_CPU
    if [[ $tool == rustls ]]; then
        run_rustls_batch "$target" "${DURATION%s}" "$prefix"
    else
        run_openssl_measured "$target" "${DURATION%s}" "$prefix"
    fi
    read_children_cpu
    client_after=$CHILDREN_CPU
    ticks_after=$(cpu_ticks "$PORTCULLIS_PID")
    kill -0 "$PORTCULLIS_PID" 2>/dev/null ||
        fail "Portcullis exited during the $target run; see $WORK/portcullis.log"
    ((BATCH_CONNECTIONS > 0)) || fail "$target: no connection completed; see $prefix*.err"

    local cpu_seconds
    cpu_seconds=$(awk -v ticks=$((ticks_after - ticks_before)) -v hz="$CLOCK_TICKS" \
        'BEGIN { print ticks / hz }')
    RESULT_CONNECTIONS[$key]=$BATCH_CONNECTIONS
    RESULT_RESUMED[$key]=$BATCH_RESUMED
    RESULT_RATE[$key]=$(awk -v n="$BATCH_CONNECTIONS" -v s="$BATCH_SECONDS" 'BEGIN { printf "%.0f", n / s }')
    RESULT_CPU_US[$key]=$(awk -v cpu="$cpu_seconds" -v n="$BATCH_CONNECTIONS" \
        'BEGIN { printf "%.0f", cpu / n * 1000000 }')
    RESULT_CPU_SHARE[$key]=$(awk -v cpu="$cpu_seconds" -v s="$BATCH_SECONDS" \
        'BEGIN { printf "%.0f", cpu / s * 100 }')
    RESULT_CLIENT_SHARE[$key]=$(awk -v before="$client_before" -v after="$client_after" \
        -v s="$BATCH_SECONDS" 'BEGIN { printf "%.0f", (after - before) / s * 100 }')
    # Failed clients and connections without a full response. Any of them
    # makes the run's figures suspect.
    RESULT_ERRORS[$key]=$BATCH_ERRORS
    if ((BATCH_ERRORS != 0)); then
        log "WARNING: $target with $tool had $BATCH_ERRORS errors"
        cat "$prefix"*.err >&2
    fi
}

# Prints a ratio of two figures with two decimals.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'
}

# Prints the protocol, cipher suite and key exchange group of one handshake
# with the internal CA's client certificate, as openssl s_client reports it.
print_negotiated() {
    openssl s_client -connect "127.0.0.1:$PORT" "-tls${TLS_VERSION/./_}" -brief \
        -cert "$WORK/client/cert.pem" -key "$WORK/client/key.pem" </dev/null 2>&1 |
        awk -F ': ' '/^(Protocol version|Ciphersuite|Server Temp Key|Negotiated TLS1.3 group):/ {
            printf "%s%s: %s", separator, $1, $2; separator = ", "
        } END { print "" }'
}

print_machine() {
    echo "- CPUs: $(nproc), $(lscpu | sed -n 's/^Model name:[[:space:]]*//p')"
    echo "- memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- openssl: $(openssl version)"
    echo "- rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "- Portcullis: commit $REVISION"
    echo "- handshake: $NEGOTIATED"
    echo "- response to GET $REQUEST_PATH: $RESPONSE_BYTES bytes"
    echo "- load average before the runs: $LOAD_BEFORE, after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
}

print_summary() {
    local tool target key
    echo
    echo "## Results"
    echo
    echo "TLS $TLS_VERSION; $DURATION per run after a $WARMUP warm-up; rustls client: one process,"
    echo "$TASKS connections at once; openssl s_time: $CLIENTS processes. Portcullis on CPU $SERVER_CPU,"
    echo "the clients on CPU $LOAD_CPU; Portcullis with PORTCULLIS_LOG=warn."
    echo
    echo "| client | target | handshakes/s | connections | resumed | server CPU µs per handshake | server CPU % | client CPU % | errors |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

    for tool in "${TOOLS[@]}"; do
        for target in "${TARGETS[@]}"; do
            key=$tool,$target
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${TOOL_LABELS[$tool]}" \
                "${TARGET_LABELS[$target]}" "${RESULT_RATE[$key]}" "${RESULT_CONNECTIONS[$key]}" \
                "${RESULT_RESUMED[$key]}" "${RESULT_CPU_US[$key]}" "${RESULT_CPU_SHARE[$key]}" \
                "${RESULT_CLIENT_SHARE[$key]}" "${RESULT_ERRORS[$key]}"
        done
    done

    echo
    echo "| client | ratio | handshakes/s | server CPU per handshake |"
    echo "| --- | --- | ---: | ---: |"

    for tool in "${TOOLS[@]}"; do
        printf '| %s | full mutual TLS / server-only | %s | %s |\n' "${TOOL_LABELS[$tool]}" \
            "$(ratio "${RESULT_RATE[$tool,full-mtls]}" "${RESULT_RATE[$tool,server-only]}")" \
            "$(ratio "${RESULT_CPU_US[$tool,full-mtls]}" "${RESULT_CPU_US[$tool,server-only]}")"
        printf '| %s | resumed / full mutual TLS | %s | %s |\n' "${TOOL_LABELS[$tool]}" \
            "$(ratio "${RESULT_RATE[$tool,resumed-mtls]}" "${RESULT_RATE[$tool,full-mtls]}")" \
            "$(ratio "${RESULT_CPU_US[$tool,resumed-mtls]}" "${RESULT_CPU_US[$tool,full-mtls]}")"
    done
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local setting
    for setting in DURATION WARMUP; do
        [[ ${!setting} =~ ^[1-9][0-9]*s$ ]] ||
            fail "$setting must be a whole number of seconds like 20s, not ${!setting}"
    done
    [[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || fail "CLIENTS must be a positive number, not $CLIENTS"
    [[ $TASKS =~ ^[1-9][0-9]*$ ]] || fail "TASKS must be a positive number, not $TASKS"
    [[ $TLS_VERSION == 1.3 || $TLS_VERSION == 1.2 ]] ||
        fail "TLS_VERSION must be 1.3 or 1.2, not $TLS_VERSION"
    if (($(nproc) < 2)); then
        log "WARNING: only one CPU; the server and the clients share it"
    fi
    install_tools
    CLOCK_TICKS=$(getconf CLK_TCK)

    # Read before the build, so that it names the tree the binary is built
    # from. With SKIP_BUILD=1 the binary may be older.
    REVISION=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then
        REVISION="$REVISION with uncommitted changes"
    fi
    if [[ $SKIP_BUILD == 1 ]]; then
        REVISION="$REVISION (SKIP_BUILD=1: the binary in $TARGET_DIR/release may be older)"
    else
        log "building the release binary and the rustls client"
        # Two builds, because building the example together with the binary
        # would give the binary the dev-dependency features of the example.
        (cd "$ROOT" && cargo build --release -q -p portcullis --bin portcullis)
        (cd "$ROOT" && cargo build --release -q -p portcullis --example tls_handshakes)
    fi

    WORK=$(mktemp -d -t portcullis-mtls-bench.XXXXXX)
    # The master key and the client's private key are written below, so new
    # files are private.
    umask 077
    # Copies, so that a build started elsewhere during the run cannot
    # replace the binaries under test.
    local bin=$WORK/portcullis
    cp "$TARGET_DIR/release/portcullis" "$bin"
    cp "$TARGET_DIR/release/examples/tls_handshakes" "$WORK/tls_handshakes"
    local data=$WORK/data
    mkdir -p "$data"
    export PORTCULLIS_DATA_DIR=$data

    PORT=$(pick_port)
    cat >"$data/portcullis.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
client_certificates = "optional"
TOML

    log "creating the internal CA, tenant $TENANT, one client and its certificate"
    "$bin" ca init >/dev/null
    "$bin" tenants create "$TENANT" >/dev/null
    local client_id
    client_id=$("$bin" --output json clients create --tenant "$TENANT" --name "mTLS bench" \
        --grant-types client_credentials --scopes bench:read | json_field client_id)
    [[ -n $client_id ]] || fail "could not read the id of the created client"
    "$bin" certs issue --client "$client_id" --out "$WORK/client" >/dev/null

    log "starting Portcullis on 127.0.0.1:$PORT"
    PORTCULLIS_LOG=warn taskset -c "$SERVER_CPU" "$bin" serve >"$WORK/portcullis.log" 2>&1 &
    PIDS+=("$!")
    PORTCULLIS_PID=$!
    wait_for_port "$PORTCULLIS_PID" "$PORT"

    log "checking each target for one second"
    local target expected_bytes=
    for target in "${TARGETS[@]}"; do
        check_target "$target"
        if [[ -n $expected_bytes && $RESPONSE_BYTES != "$expected_bytes" ]]; then
            fail "$target: responses of $RESPONSE_BYTES bytes, other targets got $expected_bytes"
        fi
        expected_bytes=$RESPONSE_BYTES
        run_rustls_batch "$target" 1 "$WORK/check-rustls-$target"
        ((BATCH_ERRORS == 0 && BATCH_CONNECTIONS > 0)) ||
            fail "$target: the rustls client had $BATCH_ERRORS errors in the check run: $(cat "$WORK/check-rustls-$target.err")"
    done
    check_certificate_request
    NEGOTIATED=$(print_negotiated)

    LOAD_BEFORE=$(cut -d ' ' -f 1-3 /proc/loadavg)
    local tool
    for tool in "${TOOLS[@]}"; do
        for target in "${TARGETS[@]}"; do
            run_target "$target" "$tool"
        done
        # Every connection of a resumed run after the first of each client
        # must have resumed its session, and none of a full-handshake run,
        # or the figures measure the wrong handshake.
        local first_connections=$CLIENTS
        [[ $tool == rustls ]] && first_connections=$TASKS
        local key=$tool,resumed-mtls
        ((RESULT_RESUMED[$key] + first_connections >= RESULT_CONNECTIONS[$key])) ||
            log "WARNING: only ${RESULT_RESUMED[$key]} of ${RESULT_CONNECTIONS[$key]} connections of the resumed run with $tool resumed"
        ((RESULT_RESUMED[$tool,server-only] == 0 && RESULT_RESUMED[$tool,full-mtls] == 0)) ||
            log "WARNING: connections of a full-handshake run with $tool resumed a session"
    done

    echo
    echo "## Machine"
    echo
    print_machine
    print_summary
}

main "$@"
