#!/usr/bin/env bash
# Private single-node Kafka broker (KRaft, broker+controller in one JVM) for development,
# tests and benchmarks.
#
#   services/kafka.sh start|stop|status
#
# Jars come from Maven Central (services/kafka/pom.xml) into
# ${XDG_CACHE_HOME:-~/.cache}/unified-msg/kafka-<version>/; config, data, logs and pid file
# live in ${UMSG_STATE_DIR:-/var/tmp/unified-msg}/kafka/.
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS  if set, an external cluster is used: this script does nothing
#   KAFKA_PORT               client listener port (default 9092)
#   KAFKA_CONTROLLER_PORT    KRaft controller port (default KAFKA_PORT+1)
#   KAFKA_HEAP_OPTS          JVM heap flags (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT      seconds to wait for readiness (default 60)
#   UMSG_PYTHON              python with confluent_kafka for the readiness probe; tried
#                            first, then <repo>/.venv/bin/python, then $PYTHON (which the
#                            Makefile uses for "the python that creates the venv", so it
#                            comes last)
set -euo pipefail

UMSG_SVC=kafka
# shellcheck source=services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POM="$UMSG_REPO_ROOT/services/kafka/pom.xml"
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n 1)
[ -n "$KAFKA_VERSION" ] || die "cannot read <kafka.version> from $POM"
JAR_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/unified-msg/kafka-$KAFKA_VERSION"

PORT=${KAFKA_PORT:-9092}
CPORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
PY_CANDIDATES=(${UMSG_PYTHON:+"$UMSG_PYTHON"} "$UMSG_REPO_ROOT/.venv/bin/python" ${PYTHON:+"$PYTHON"})

KDIR="$UMSG_STATE/kafka"
DATA="$KDIR/data"
CONF="$KDIR/server.properties"
LOG4J="$KDIR/log4j2.properties"
PIDFILE="$KDIR/kafka.pid"
SERVER_LOG="$KDIR/server.log"   # log4j output
OUT_LOG="$KDIR/kafka.out"       # JVM stdout/stderr: crashes before logging is up
FORMATTED="$KDIR/formatted"     # what the storage was formatted with (see check_format)

# ---------------------------------------------------------------------------- process state

# Pid of our broker, or nothing. A pid file whose process is gone or is something else
# (pid reuse after a reboot) is stale and removed.
running_pid() {
    local pid=
    [ -f "$PIDFILE" ] && pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if pid_matches "$pid" kafka.Kafka "$CONF"; then
        echo "$pid"
        return
    fi
    rm -f "$PIDFILE"
    # Pid file lost but our broker still up (e.g. state dir partly cleaned): adopt it.
    pid=$(find_pids kafka.Kafka "$CONF" | head -n 1)
    if [ -n "$pid" ]; then
        echo "$pid" >"$PIDFILE"
        echo "$pid"
    fi
}

# ---------------------------------------------------------------------------- prerequisites

ensure_java() {
    if ! command -v java >/dev/null; then
        apt_install openjdk-17-jre-headless
    fi
    # Kafka 4.x brokers need Java 17+.
    local v
    v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Kafka $KAFKA_VERSION needs Java 17+, found '${v:-unknown}' ($(command -v java))"
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

# Download the broker jars once. The download goes to a temp dir that is renamed into
# place only when complete, so an interrupted fetch is never mistaken for a full cache.
# The pom's hash is kept in the cache so that editing the pom triggers a new fetch.
ensure_jars() {
    local want
    want=$(pom_hash)
    if [ -d "$JAR_DIR" ] && [ "$(cat "$JAR_DIR/.pom.sha256" 2>/dev/null)" = "$want" ]; then
        return
    fi
    command -v mvn >/dev/null || apt_install maven
    mkdir -p "$(dirname "$JAR_DIR")"
    rm -rf "$JAR_DIR".tmp.*   # leftovers of interrupted fetches (we hold the lock)
    local tmp
    tmp=$(mktemp -d "$JAR_DIR.tmp.XXXXXX")
    say "fetching Kafka $KAFKA_VERSION jars with Maven into $JAR_DIR"
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1 </dev/null; then
        show_logs "$tmp.mvn.log"
        rm -rf "$tmp" "$tmp.mvn.log"
        die "Maven could not fetch the Kafka jars (see above)"
    fi
    rm -f "$tmp.mvn.log"
    [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$tmp"; die "Maven ran but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
    echo "$want" >"$tmp/.pom.sha256"
    if [ -d "$JAR_DIR" ]; then   # outdated cache (pom changed); broker is not running
        rm -rf "$JAR_DIR.old"
        mv -T "$JAR_DIR" "$JAR_DIR.old"
    fi
    mv -T "$tmp" "$JAR_DIR"
    rm -rf "$JAR_DIR.old"
}

# ---------------------------------------------------------------------------- configuration

write_config() {
    mkdir -p "$KDIR"
    # Single node acting as broker and KRaft controller. Kafka 4.x formats a single-node
    # dynamic quorum with `--standalone`, which requires controller.quorum.bootstrap.servers
    # (not the static controller.quorum.voters).
    cat >"$CONF" <<EOF
# Generated by services/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

# One broker: every internal topic must make do with a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Development defaults: no 3 s wait before the first consumer group rebalance,
# topics appear on first use, one partition unless asked otherwise.
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
num.network.threads=3
num.io.threads=4
log.retention.hours=168
log.segment.bytes=1073741824
EOF

    # Quiet logging to a size-capped file: warnings and errors, plus the broker's
    # start/stop lines so the log shows when it was up.
    cat >"$LOG4J" <<EOF
# Generated by services/kafka.sh on every start; edits are overwritten.
status = warn
name = umsg-kafka
# Kafka logs while it shuts down; log4j's own shutdown hook would stop logging first
# (and warn "Unable to register Log4j shutdown hook"). The file appender flushes each line.
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $SERVER_LOG
appender.file.filePattern = $SERVER_LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
EOF
}

storage_tool() {
    java -Xmx256m -cp "$JAR_DIR/*" -Dlog4j2.configurationFile="$LOG4J" kafka.tools.StorageTool "$@"
}

# Format the KRaft storage once. A formatted dir has meta.properties; a dir without it
# can only be the remains of an interrupted format (no broker has run on it), so it is
# wiped and formatted again. Later starts reuse the storage: topics survive restarts.
ensure_format() {
    if [ -f "$DATA/meta.properties" ]; then
        check_format
        return
    fi
    rm -rf "$DATA"
    local cluster_id out
    cluster_id=$(storage_tool random-uuid 2>>"$OUT_LOG" | tail -n 1) || { show_logs "$OUT_LOG"; die "StorageTool random-uuid failed"; }
    if ! out=$(storage_tool format --standalone -t "$cluster_id" -c "$CONF" 2>&1); then
        printf '%s\n' "$out" >&2
        die "formatting the Kafka storage in $DATA failed"
    fi
    echo "controller=127.0.0.1:$CPORT" >"$FORMATTED"
}

# The formatted storage records the controller's endpoint as the quorum's only voter, so a
# different controller port later would leave the broker without a reachable controller.
check_format() {
    local was
    was=$(cat "$FORMATTED" 2>/dev/null || true)
    if [ -n "$was" ] && [ "$was" != "controller=127.0.0.1:$CPORT" ]; then
        die "storage in $DATA was formatted with $was, not 127.0.0.1:$CPORT; set KAFKA_CONTROLLER_PORT=${was##*:} (or KAFKA_PORT accordingly), or stop and remove $DATA (loses all topics)"
    fi
}

# ---------------------------------------------------------------------------- readiness

# Ready = a real metadata request succeeds and lists this broker. Uses confluent_kafka
# from the project's venv; one Python process loops so the import cost is paid once.
# Exit codes: 0 ready, 1 timed out, 2 broker process died, 3 probe unavailable.
probe_metadata() {
    local pid=$1 timeout=$2 py rc
    for py in "${PY_CANDIDATES[@]}"; do
        command -v "$py" >/dev/null || continue
        rc=0
        probe_metadata_with "$py" "$pid" "$timeout" || rc=$?
        [ "$rc" -eq 3 ] || return "$rc"   # 3 = no confluent_kafka there: try the next
    done
    return 3
}

probe_metadata_with() {
    local py=$1 pid=$2 timeout=$3
    "$py" - "$PORT" "$pid" "$timeout" <<'PYEOF'
import os, sys, time
try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
except ImportError:
    sys.exit(3)
port, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
admin = AdminClient({
    "bootstrap.servers": f"127.0.0.1:{port}",
    "log_level": 0,                    # no "connection refused" spam while it boots
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 500,
})
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(2)
    left = deadline - time.monotonic()
    if left <= 0:
        sys.exit(1)
    try:
        md = admin.list_topics(timeout=min(2.0, max(left, 0.1)))
        if md.brokers:
            sys.exit(0)
    except KafkaException:
        pass
    time.sleep(0.2)
PYEOF
}

# Fallback when no Python with confluent_kafka is around (e.g. before the venv exists):
# the port accepts connections and the broker logged that it started after $2 (byte offset).
probe_log() {
    local pid=$1 timeout=$2 offset=$3 i
    for ((i = 0; i < timeout * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || return 2
        if port_open "$PORT" && tail -c +"$((offset + 1))" "$SERVER_LOG" 2>/dev/null | grep -q 'Kafka Server started'; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

wait_ready() {
    local pid=$1 timeout=$2 offset=${3:-0} rc=0
    probe_metadata "$pid" "$timeout" || rc=$?
    if [ "$rc" -eq 3 ]; then
        warn "no python with confluent_kafka (${PY_CANDIDATES[*]}); readiness judged from port and log only"
        rc=0
        probe_log "$pid" "$timeout" "$offset" || rc=$?
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------- commands

cmd_start() {
    local t0=$SECONDS pid rc=0
    take_lock kafka
    pid=$(running_pid)
    if [ -n "$pid" ]; then
        # Possibly still booting (started by a concurrent call): wait rather than lie.
        wait_ready "$pid" "$START_TIMEOUT" || die "broker pid $pid is running but not answering on 127.0.0.1:$PORT"
        say "already running on 127.0.0.1:$PORT (pid $pid)"
        return
    fi
    for p in "$PORT" "$CPORT"; do
        port_open "$p" && die "port 127.0.0.1:$p is taken by another process (not our broker); set KAFKA_PORT/KAFKA_CONTROLLER_PORT, or KAFKA_BOOTSTRAP_SERVERS to use that cluster"
    done
    ensure_java
    ensure_jars
    write_config
    ensure_format

    # Log sizes now, so that a failure report shows this run's lines only.
    local offset out_offset
    offset=$(stat -c %s "$SERVER_LOG" 2>/dev/null || echo 0)
    echo "=== $(date -Is) starting kafka.Kafka $CONF" >>"$OUT_LOG"
    out_offset=$(stat -c %s "$OUT_LOG")
    # setsid: the broker gets its own session, so it outlives the terminal / make that
    # started it and is not hit by its Ctrl-C. The wrapper writes the real pid (setsid
    # may fork) and then execs the JVM. 9>&- keeps our lock fd out of the daemon.
    # shellcheck disable=SC2086,SC2016  # HEAP_OPTS is a list of flags; $$ is the wrapper's
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$KDIR" \
        -cp "$JAR_DIR/*" kafka.Kafka "$CONF" \
        </dev/null >>"$OUT_LOG" 2>&1 9>&- &
    # Wait for the wrapper to record the pid.
    for _ in $(seq 50); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] || die "could not start java (no pid recorded)"

    wait_ready "$pid" "$START_TIMEOUT" "$offset" || rc=$?
    if [ "$rc" -ne 0 ]; then
        if [ "$rc" -eq 2 ]; then
            warn "broker process exited during startup"
        else
            warn "broker not ready after ${START_TIMEOUT}s; stopping it"
            kill_and_wait "$pid" 10
        fi
        rm -f "$PIDFILE"
        show_log_since "$SERVER_LOG" "$offset"
        show_log_since "$OUT_LOG" "$out_offset"
        die "Kafka failed to start on 127.0.0.1:$PORT"
    fi
    say "ready on 127.0.0.1:$PORT (started in $((SECONDS - t0))s)"
}

cmd_stop() {
    local pid
    take_lock kafka
    pid=$(running_pid)
    if [ -z "$pid" ]; then
        say "not running"
        return
    fi
    # SIGTERM = controlled shutdown (flushes logs, closes the KRaft log cleanly).
    kill_and_wait "$pid" 30
    rm -f "$PIDFILE"
    say "stopped"
}

cmd_status() {
    local pid
    pid=$(running_pid)
    if [ -n "$pid" ]; then
        say "running on 127.0.0.1:$PORT (pid $pid)"
    else
        say "not running"
        return 3
    fi
}

main() {
    local cmd=${1:-}
    if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
        case $cmd in start | stop | status) ;; *) die "usage: $0 start|stop|status" ;; esac
        say "external cluster $KAFKA_BOOTSTRAP_SERVERS is used (KAFKA_BOOTSTRAP_SERVERS); nothing to $cmd"
        return
    fi
    case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: $0 start|stop|status" ;;
    esac
}

main "$@"
