#!/usr/bin/env bash
# Private Kafka (KRaft) for development, tests and benchmarks: by default one node acting as
# broker and controller in one JVM; with KAFKA_BROKERS=N (2..5) a cluster of N such nodes on
# loopback, each in its own JVM, forming an N-voter controller quorum.
#
#   services/kafka.sh start|stop|status        the whole cluster (status: one line per node)
#   services/kafka.sh stop-broker N            SIGTERM node N (controlled shutdown)
#   services/kafka.sh kill-broker N            SIGKILL node N
#   services/kafka.sh start-broker N           start node N again, wait until it is back in
#                                              the cluster metadata
#   services/kafka.sh bootstrap                the bootstrap list, e.g. 127.0.0.1:9092,127.0.0.1:9094
#   services/kafka.sh sasl-env [ssl]           client settings for the SASL listener, as env lines
#
# Jars come from Maven Central (services/kafka/pom.xml) into
# ${XDG_CACHE_HOME:-~/.cache}/unified-msg/kafka-<version>/; config, data, logs and pid files
# live in ${UMSG_STATE_DIR:-/var/tmp/unified-msg}/kafka/ (one broker) or in
# .../kafka/node-N/ (a cluster). See services/README.md.
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS  if set, an external cluster is used: this script does nothing
#   KAFKA_BROKERS            number of nodes, 1..5 (default 1); fixed when the storage is formatted
#   KAFKA_PORT               client port of node 1 (default 9092); node N listens on
#                            KAFKA_PORT+2(N-1), its controller on the port after that
#   KAFKA_CONTROLLER_PORT    one broker only: KRaft controller port (default KAFKA_PORT+1)
#   KAFKA_HEAP_OPTS          JVM heap flags per node (default -Xms256m -Xmx512m for one broker,
#                            -Xms128m -Xmx384m per node of a cluster)
#   KAFKA_START_TIMEOUT      seconds to wait for readiness (default 60; 120 for a cluster)
#   KAFKA_SASL               1: also a SCRAM-SHA-512 SASL_PLAINTEXT listener on KAFKA_SASL_PORT
#                            (+2(N-1) for node N) and a SASL_SSL one on the port after it
#   KAFKA_SASL_PORT          default KAFKA_PORT+10
#   KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD   the SCRAM user (default umsg / umsg-secret)
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

MAX_BROKERS=5   # node 6 would use KAFKA_PORT+10, the SASL port
PORT=${KAFKA_PORT:-9092}
BROKERS_WANTED=${KAFKA_BROKERS:-1}
SASL=${KAFKA_SASL:-0}
SASL_PORT=${KAFKA_SASL_PORT:-$((PORT + 10))}
SASL_USER=${KAFKA_SASL_USERNAME:-umsg}
SASL_PASSWORD=${KAFKA_SASL_PASSWORD:-umsg-secret}
SCRAM="SCRAM-SHA-512"
PY_CANDIDATES=(${UMSG_PYTHON:+"$UMSG_PYTHON"} "$UMSG_REPO_ROOT/.venv/bin/python" ${PYTHON:+"$PYTHON"})

case $PORT in '' | *[!0-9]*) die "KAFKA_PORT must be a port number, not '$PORT'" ;; esac
case $SASL_PORT in '' | *[!0-9]*) die "KAFKA_SASL_PORT must be a port number, not '$SASL_PORT'" ;; esac
case $BROKERS_WANTED in
[1-9]) [ "$BROKERS_WANTED" -le "$MAX_BROKERS" ] || die "KAFKA_BROKERS must be 1..$MAX_BROKERS, not $BROKERS_WANTED" ;;
*) die "KAFKA_BROKERS must be 1..$MAX_BROKERS, not '$BROKERS_WANTED'" ;;
esac
case $SASL in 0 | 1) ;; *) die "KAFKA_SASL must be 0 or 1, not '$SASL'" ;; esac

KDIR="$UMSG_STATE/kafka"
FORMATTED="$KDIR/formatted"     # what the storage was formatted with (see check_format)
TLS_DIR="$KDIR/tls"             # self-signed certificate for the SASL_SSL listener

# Cluster size in use; set in main(): the formatted one, or KAFKA_BROKERS before the first start.
BROKERS=1

# ---------------------------------------------------------------------------- nodes

# Set the N* variables for node $1. One broker keeps the layout it always had (everything
# directly in kafka/); a cluster has kafka/node-N/ with the same files in each.
node_vars() {
    N=$1
    if [ "$BROKERS" -eq 1 ]; then
        NDIR=$KDIR
        NPORT=$PORT
        NCPORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
    else
        NDIR="$KDIR/node-$N"
        NPORT=$((PORT + 2 * (N - 1)))
        NCPORT=$((NPORT + 1))
    fi
    NSASL_PORT=$((SASL_PORT + 2 * (N - 1)))
    NSSL_PORT=$((NSASL_PORT + 1))
    NDATA="$NDIR/data"
    NCONF="$NDIR/server.properties"
    NLOG4J="$NDIR/log4j2.properties"
    NPIDFILE="$NDIR/kafka.pid"
    NSERVER_LOG="$NDIR/server.log"   # log4j output
    NOUT_LOG="$NDIR/kafka.out"       # JVM stdout/stderr: crashes before logging is up
}

nodes() { seq 1 "$BROKERS"; }

# host:port of every node's listener $1 (client, controller, sasl, ssl), comma-separated.
endpoints() {
    local kind=$1 n list=
    for n in $(nodes); do
        node_vars "$n"
        case $kind in
        client) list+=",127.0.0.1:$NPORT" ;;
        controller) list+=",127.0.0.1:$NCPORT" ;;
        sasl) list+=",127.0.0.1:$NSASL_PORT" ;;
        ssl) list+=",127.0.0.1:$NSSL_PORT" ;;
        esac
    done
    echo "${list#,}"
}

# The cluster size the storage was formatted for, or nothing if it is not formatted yet.
# Storage formatted before clusters existed has "controller=..." only (or, older still, no
# record at all next to data/meta.properties): one broker.
formatted_brokers() {
    local b
    b=$(sed -n 's/^brokers=//p' "$FORMATTED" 2>/dev/null | head -n 1)
    if [ -n "$b" ]; then
        echo "$b"
    elif [ -f "$KDIR/data/meta.properties" ] || grep -q '^controller=' "$FORMATTED" 2>/dev/null; then
        echo 1
    fi
}

# ---------------------------------------------------------------------------- process state

# Pid of node $1's broker, or nothing. A pid file whose process is gone or is something else
# (pid reuse after a reboot) is stale and removed.
running_pid() {
    local pid=
    node_vars "$1"
    [ -f "$NPIDFILE" ] && pid=$(cat "$NPIDFILE" 2>/dev/null || true)
    if pid_matches "$pid" kafka.Kafka "$NCONF"; then
        echo "$pid"
        return
    fi
    rm -f "$NPIDFILE"
    # Pid file lost but our broker still up (e.g. state dir partly cleaned): adopt it.
    pid=$(find_pids kafka.Kafka "$NCONF" | head -n 1)
    if [ -n "$pid" ]; then
        if [ -d "$NDIR" ]; then echo "$pid" >"$NPIDFILE"; fi
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

# Node $1's server.properties and log4j2.properties.
write_config() {
    node_vars "$1"
    mkdir -p "$NDIR"
    # Replication of the internal topics and the broker defaults for new topics: everything on
    # one broker; on a cluster three copies (or as many nodes as there are) of which two must
    # be in sync for acks=all, as in production.
    local rf=$((BROKERS < 3 ? BROKERS : 3)) isr=$((BROKERS < 2 ? BROKERS : 2))
    local listeners="PLAINTEXT://127.0.0.1:$NPORT,CONTROLLER://127.0.0.1:$NCPORT"
    local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if [ "$SASL" = 1 ]; then
        listeners+=",SASL_PLAINTEXT://127.0.0.1:$NSASL_PORT,SASL_SSL://127.0.0.1:$NSSL_PORT"
        protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
    fi
    # Kafka 4.x formats a dynamic quorum (`--standalone` for one node, `--initial-controllers`
    # for several), which requires controller.quorum.bootstrap.servers (not the static
    # controller.quorum.voters) listing every controller.
    cat >"$NCONF" <<EOF
# Generated by services/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=$N
controller.quorum.bootstrap.servers=$(endpoints controller)
listeners=$listeners
advertised.listeners=$listeners
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
log.dirs=$NDATA

# Internal topics: $rf replica(s), $isr in sync; the same defaults for new topics.
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
default.replication.factor=$rf
min.insync.replicas=$isr

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
    if [ "$SASL" = 1 ]; then
        # SCRAM users live in the cluster metadata (format --add-scram, or the admin API);
        # brokers talk to each other over PLAINTEXT, so no broker credentials are needed.
        local pw
        pw=$(cat "$TLS_DIR/keystore.password")
        cat >>"$NCONF" <<EOF

# KAFKA_SASL=1: SCRAM-SHA-512 over SASL_PLAINTEXT and SASL_SSL (self-signed, $TLS_DIR).
sasl.enabled.mechanisms=$SCRAM
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/keystore.p12
ssl.keystore.password=$pw
ssl.key.password=$pw
EOF
    fi

    # Quiet logging to a size-capped file: warnings and errors, plus the broker's
    # start/stop lines so the log shows when it was up.
    cat >"$NLOG4J" <<EOF
# Generated by services/kafka.sh on every start; edits are overwritten.
status = warn
name = umsg-kafka
# Kafka logs while it shuts down; log4j's own shutdown hook would stop logging first
# (and warn "Unable to register Log4j shutdown hook"). The file appender flushes each line.
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $NSERVER_LOG
appender.file.filePattern = $NSERVER_LOG.%i
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

# A self-signed certificate for 127.0.0.1/localhost, made once per state dir with the JDK's
# keytool: keystore.p12 for the brokers, ca.pem for clients (librdkafka's ssl.ca.location).
ensure_tls() {
    [ -s "$TLS_DIR/keystore.p12" ] && [ -s "$TLS_DIR/ca.pem" ] && [ -s "$TLS_DIR/keystore.password" ] && return
    command -v keytool >/dev/null || die "keytool (from the JDK) is needed for KAFKA_SASL=1"
    local tmp pw
    mkdir -p "$KDIR"
    rm -rf "$TLS_DIR".tmp.*
    tmp=$(mktemp -d "$TLS_DIR.tmp.XXXXXX")
    pw=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    ( umask 077 && echo "$pw" >"$tmp/keystore.password" )
    if ! keytool -genkeypair -alias umsg-kafka -keyalg RSA -keysize 2048 -validity 3650 \
            -dname "CN=localhost,O=unified-msg development" -ext "SAN=IP:127.0.0.1,DNS:localhost" \
            -ext "BC:c=ca:true" -keystore "$tmp/keystore.p12" -storetype PKCS12 \
            -storepass "$pw" -keypass "$pw" >"$tmp/keytool.log" 2>&1 ||
        ! keytool -exportcert -rfc -alias umsg-kafka -keystore "$tmp/keystore.p12" -storetype PKCS12 \
            -storepass "$pw" -file "$tmp/ca.pem" >>"$tmp/keytool.log" 2>&1; then
        show_logs "$tmp/keytool.log"
        rm -rf "$tmp"
        die "keytool could not make the SASL_SSL certificate"
    fi
    rm -f "$tmp/keytool.log"
    # Clients of any user may read the CA file; the keystore and its password stay private.
    chmod 755 "$tmp"
    chmod 644 "$tmp/ca.pem"
    chmod 600 "$tmp/keystore.p12"
    rm -rf "$TLS_DIR"
    mv -T "$tmp" "$TLS_DIR"
}

storage_tool() {
    java -Xmx256m -cp "$JAR_DIR/*" -Dlog4j2.configurationFile="$NLOG4J" kafka.tools.StorageTool "$@"
}

# A Kafka Uuid (16 random bytes, base64url without padding; never starting with '-', which
# Kafka avoids too), made without starting a JVM for `kafka-storage random-uuid`.
new_uuid() {
    local u
    while :; do
        u=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        case $u in -*) ;; *) echo "$u"; return ;; esac
    done
}

# --add-scram for `format` when KAFKA_SASL=1 and the credentials need no quoting in the
# format tool's syntax; anything else is set through the admin API once the broker is up.
scram_format_args() {
    SCRAM_ARGS=()
    [ "$SASL" = 1 ] || return 0
    case "$SASL_USER$SASL_PASSWORD" in *[!A-Za-z0-9._@+-]*) return 0 ;; esac
    SCRAM_ARGS=(--add-scram "$SCRAM=[name=$SASL_USER,password=$SASL_PASSWORD]")
}

# Format the KRaft storage once. A formatted storage has its record in $FORMATTED (a single
# broker of old: data/meta.properties); anything else can only be the remains of an
# interrupted format (no broker has run on it), so it is wiped and formatted again. Later
# starts reuse the storage: topics survive restarts.
ensure_format() {
    if [ -n "$(formatted_brokers)" ]; then
        check_format
        return
    fi
    local cluster_id n out
    rm -rf "$KDIR/data" "$KDIR"/node-*/data
    cluster_id=$(new_uuid)
    scram_format_args
    if [ "$BROKERS" -eq 1 ]; then
        node_vars 1
        if ! out=$(storage_tool format --standalone -t "$cluster_id" -c "$NCONF" "${SCRAM_ARGS[@]}" 2>&1); then
            printf '%s\n' "$out" >&2
            die "formatting the Kafka storage in $NDATA failed"
        fi
        printf 'controller=127.0.0.1:%s\nbrokers=1\n' "$NCPORT" >"$FORMATTED"
        return
    fi
    # Every node is formatted with the same initial quorum: all N controllers, each named by
    # node id, endpoint and the directory id of its metadata log dir.
    local initial="" pids=() rc=0
    for n in $(nodes); do
        node_vars "$n"
        initial+=",$n@127.0.0.1:$NCPORT:$(new_uuid)"
    done
    initial=${initial#,}
    for n in $(nodes); do   # in parallel: each is a JVM start
        node_vars "$n"
        storage_tool format --initial-controllers "$initial" -t "$cluster_id" -c "$NCONF" \
            "${SCRAM_ARGS[@]}" >"$NDIR/format.log" 2>&1 9>&- &
        pids+=($!)
    done
    for n in $(nodes); do
        wait "${pids[n - 1]}" || rc=1
    done
    if [ "$rc" -ne 0 ]; then
        for n in $(nodes); do node_vars "$n"; show_logs "$NDIR/format.log"; done
        die "formatting the Kafka storage of the $BROKERS nodes in $KDIR failed"
    fi
    for n in $(nodes); do node_vars "$n"; rm -f "$NDIR/format.log"; done
    printf 'brokers=%s\ncontrollers=%s\n' "$BROKERS" "$(endpoints controller)" >"$FORMATTED"
}

# The formatted storage records the controllers' endpoints as the quorum's voters, so different
# controller ports later would leave the brokers without a reachable controller.
check_format() {
    local was want
    if [ "$BROKERS" -eq 1 ]; then
        node_vars 1
        was=$(sed -n 's/^controller=//p' "$FORMATTED" 2>/dev/null | head -n 1)
        if [ -n "$was" ] && [ "$was" != "127.0.0.1:$NCPORT" ]; then
            die "storage in $NDATA was formatted with controller=$was, not 127.0.0.1:$NCPORT; set KAFKA_CONTROLLER_PORT=${was##*:} (or KAFKA_PORT accordingly), or stop and remove $NDATA (loses all topics)"
        fi
        return
    fi
    was=$(sed -n 's/^controllers=//p' "$FORMATTED" | head -n 1)
    want=$(endpoints controller)
    if [ "$was" != "$want" ]; then
        local first=${was%%,*}
        die "storage in $KDIR was formatted with controllers $was, not $want; set KAFKA_PORT=$((${first##*:} - 1)), or stop and remove $KDIR (loses all topics)"
    fi
    local n
    for n in $(nodes); do
        node_vars "$n"
        [ -f "$NDATA/meta.properties" ] || die "node $n has no formatted storage in $NDATA (removed?); stop the cluster and remove $KDIR to start afresh (loses all topics)"
    done
}

# ---------------------------------------------------------------------------- readiness

# Ready = a real metadata request through the bootstrap list lists every expected node, and
# each node started in this run has logged "Kafka Server started" since it was launched.
# Uses confluent_kafka from the project's venv; one Python process loops so the import cost
# is paid once. Arguments: timeout, then one "id:pid:logfile:offset" per node (offset -1: do
# not look at the log). With PROBE_SASL=1 it then logs in over SASL_PLAINTEXT and SASL_SSL,
# and if the user is unknown or its password differs, sets the credentials through the
# PLAINTEXT listener first (a storage formatted without KAFKA_SASL, or with another password).
# Exit codes: 0 ready, 1 timed out, 2 a broker process died, 3 probe unavailable, 4 SASL failed.
probe_metadata() {
    local py rc
    for py in "${PY_CANDIDATES[@]}"; do
        command -v "$py" >/dev/null || continue
        rc=0
        probe_metadata_with "$py" "$@" || rc=$?
        [ "$rc" -eq 3 ] || return "$rc"   # 3 = no confluent_kafka there: try the next
    done
    return 3
}

probe_metadata_with() {
    local py=$1
    shift
    PROBE_BOOTSTRAP=$(endpoints client) PROBE_SASL_BOOTSTRAP=$(endpoints sasl) PROBE_SSL_BOOTSTRAP=$(endpoints ssl) \
    PROBE_CA="$TLS_DIR/ca.pem" PROBE_USER=$SASL_USER PROBE_PASSWORD=$SASL_PASSWORD PROBE_SASL=${PROBE_SASL:-0} \
        "$py" - "$@" <<'PYEOF'
import os, sys, time
try:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
except ImportError:
    sys.exit(3)
env = os.environ
timeout = float(sys.argv[1])
nodes = []
for spec in sys.argv[2:]:
    node_id, pid, rest = spec.split(":", 2)
    log, offset = rest.rsplit(":", 1)
    nodes.append((int(node_id), int(pid), log, int(offset)))
deadline = time.monotonic() + timeout
quiet = {"log_level": 0, "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 500}  # no "connection refused" spam
admin = AdminClient({"bootstrap.servers": env["PROBE_BOOTSTRAP"], **quiet})


def alive(pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and line.split()[1] in "ZX" for line in status)
    except OSError:
        return False


def started(log, offset):
    if offset < 0:
        return True
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(offset if f.tell() >= offset else 0)  # a rolled-over log starts afresh
            return b"Kafka Server started" in f.read()
    except OSError:
        return False


waiting = nodes
while True:
    for node_id, pid, _, _ in nodes:
        if not alive(pid):
            print(f"node {node_id} (pid {pid}) exited", file=sys.stderr)
            sys.exit(2)
    left = deadline - time.monotonic()
    if left <= 0:
        print(f"not ready: node(s) {', '.join(str(n[0]) for n in waiting)} not (yet) serving", file=sys.stderr)
        sys.exit(1)
    try:
        seen = set(admin.list_topics(timeout=min(2.0, max(left, 0.1))).brokers)
    except KafkaException:
        seen = set()
    waiting = [n for n in nodes if n[0] not in seen or not started(n[2], n[3])]
    if not waiting:
        break
    time.sleep(0.2)

if env["PROBE_SASL"] != "1":
    sys.exit(0)


def sasl_login(protocol, bootstrap):
    """None if a metadata request over SASL works; else the error ('auth' if it was the login)."""
    errors = []
    conf = {"bootstrap.servers": bootstrap, "security.protocol": protocol, "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": env["PROBE_USER"], "sasl.password": env["PROBE_PASSWORD"],
            "error_cb": errors.append, **quiet}
    if protocol == "SASL_SSL":
        conf["ssl.ca.location"] = env["PROBE_CA"]
    client = AdminClient(conf)
    until = time.monotonic() + max(0.5, min(5.0, deadline - time.monotonic()))
    while True:  # short requests: a failed login shows in error_cb at once, the request only times out
        try:
            client.list_topics(timeout=0.5)
            return None
        except KafkaException as exc:
            errors.append(exc.args[0])
        client.poll(0)
        if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
            return "auth"
        if time.monotonic() >= until:
            break
    if any(e.code() == KafkaError._SSL for e in errors):
        print(f"{protocol} on {bootstrap}: {'; '.join(sorted({e.str() for e in errors}))}", file=sys.stderr)
        sys.exit(4)  # a certificate problem does not go away by waiting
    return "; ".join(sorted({e.str() for e in errors}))


upserted = False
for protocol, bootstrap in (("SASL_PLAINTEXT", env["PROBE_SASL_BOOTSTRAP"]), ("SASL_SSL", env["PROBE_SSL_BOOTSTRAP"])):
    while True:
        error = sasl_login(protocol, bootstrap)
        if error is None:
            break
        if error == "auth" and not upserted:
            # Credentials from `format --add-scram` exist only on a storage formatted with them.
            credential = UserScramCredentialUpsertion(env["PROBE_USER"], ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                                      env["PROBE_PASSWORD"].encode())
            admin.alter_user_scram_credentials([credential])[env["PROBE_USER"]].result(timeout=30)
            print(f"kafka: set the SCRAM-SHA-512 credentials of user '{env['PROBE_USER']}' through the PLAINTEXT "
                  "listener (storage formatted without KAFKA_SASL, or with another password)", file=sys.stderr)
            upserted = True
            continue
        if time.monotonic() >= deadline:
            print(f"{protocol} login as '{env['PROBE_USER']}' on {bootstrap} failed: {error}", file=sys.stderr)
            sys.exit(4)
        time.sleep(0.3)  # new credentials take a moment to reach every broker's metadata
PYEOF
}

# Fallback when no Python with confluent_kafka is around (e.g. before the venv exists): every
# node's port accepts connections and it logged that it started since it was launched.
# Arguments as for probe_metadata.
probe_log() {
    local timeout=$1 spec i ok id pid log offset rest
    shift
    for ((i = 0; i < timeout * 5; i++)); do
        ok=1
        for spec in "$@"; do
            id=${spec%%:*} rest=${spec#*:}
            pid=${rest%%:*} rest=${rest#*:}
            offset=${rest##*:} log=${rest%:*}
            kill -0 "$pid" 2>/dev/null || return 2
            node_vars "$id"
            if ! port_open "$NPORT"; then
                ok=
            elif [ "$offset" -ge 0 ] && ! tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -q 'Kafka Server started'; then
                ok=
            fi
        done
        [ -n "$ok" ] && return 0
        sleep 0.2
    done
    return 1
}

wait_ready() {
    local rc=0
    probe_metadata "$@" || rc=$?
    if [ "$rc" -eq 3 ]; then
        warn "no python with confluent_kafka (${PY_CANDIDATES[*]}); readiness judged from ports and logs only"
        [ "${PROBE_SASL:-0}" = 1 ] && warn "SASL login not checked"
        rc=0
        probe_log "$@" || rc=$?
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------- launching

# Start node $1's JVM (its config written, storage formatted). Appends "id:pid:log:offset" to
# the LAUNCHED array, for wait_ready.
launch_node() {
    node_vars "$1"
    local offset pid heap=${KAFKA_HEAP_OPTS:-}
    if [ -z "$heap" ]; then
        if [ "$BROKERS" -eq 1 ]; then heap="-Xms256m -Xmx512m"; else heap="-Xms128m -Xmx384m"; fi
    fi
    # Log sizes now, so that a failure report shows this run's lines only.
    offset=$(stat -c %s "$NSERVER_LOG" 2>/dev/null || echo 0)
    echo "=== $(date -Is) starting kafka.Kafka $NCONF" >>"$NOUT_LOG"
    OUT_OFFSETS[N]=$(stat -c %s "$NOUT_LOG")
    LOG_OFFSETS[N]=$offset
    rm -f "$NPIDFILE"
    # setsid: the broker gets its own session, so it outlives the terminal / make that
    # started it and is not hit by its Ctrl-C. The wrapper writes the real pid (setsid
    # may fork) and then execs the JVM. 9>&- keeps our lock fd out of the daemon.
    # shellcheck disable=SC2086,SC2016  # heap is a list of flags; $$ is the wrapper's
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$NPIDFILE" \
        java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$NLOG4J" -Dkafka.logs.dir="$NDIR" \
        -cp "$JAR_DIR/*" kafka.Kafka "$NCONF" \
        </dev/null >>"$NOUT_LOG" 2>&1 9>&- &
    # Wait for the wrapper to record the pid.
    for _ in $(seq 50); do [ -s "$NPIDFILE" ] && break; sleep 0.1; done
    pid=$(cat "$NPIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] || die "could not start java for node $N (no pid recorded)"
    LAUNCHED+=("$N:$pid:$NSERVER_LOG:$offset")
}

# Readiness failed with code $1 for the nodes in LAUNCHED: stop them, show their logs, die.
launch_failed() {
    local rc=$1 what=$2 spec id pid
    if [ "$rc" -eq 2 ]; then
        warn "a broker process exited during startup"
    elif [ "$rc" -eq 4 ]; then
        warn "the brokers are up but the SASL login failed"
    else
        warn "not ready after ${START_TIMEOUT}s; stopping what this run started"
    fi
    local pids=()
    for spec in "${LAUNCHED[@]}"; do pids+=("$(cut -d: -f2 <<<"$spec")"); done
    kill_all_and_wait 10 "${pids[@]}"
    for spec in "${LAUNCHED[@]}"; do
        IFS=: read -r id pid _ <<<"$spec"
        node_vars "$id"
        rm -f "$NPIDFILE"
        show_log_since "$NSERVER_LOG" "${LOG_OFFSETS[id]}"
        show_log_since "$NOUT_LOG" "${OUT_OFFSETS[id]}"
    done
    die "$what"
}

# ---------------------------------------------------------------------------- commands

cmd_start() {
    local t0=$SECONDS n pid rc=0 p
    local -a LAUNCHED=() LOG_OFFSETS=() OUT_OFFSETS=() running=() down=()
    take_lock kafka
    local was
    was=$(formatted_brokers)
    if [ -n "$was" ] && [ "$was" != "$BROKERS" ]; then
        die "storage in $KDIR was formatted for $was broker(s), not KAFKA_BROKERS=$BROKERS; set KAFKA_BROKERS=$was, or stop it and remove $KDIR to start afresh (loses all topics)"
    fi
    if [ "$BROKERS" -gt 1 ] && [ -n "${KAFKA_CONTROLLER_PORT:-}" ] && [ "$KAFKA_CONTROLLER_PORT" != $((PORT + 1)) ]; then
        die "KAFKA_CONTROLLER_PORT is for a single broker; node N of a cluster uses KAFKA_PORT+2(N-1)+1"
    fi
    START_TIMEOUT=${KAFKA_START_TIMEOUT:-$((BROKERS == 1 ? 60 : 120))}
    for n in $(nodes); do
        pid=$(running_pid "$n")
        if [ -n "$pid" ]; then running+=("$n:$pid:-:-1"); else down+=("$n"); fi
    done
    if [ ${#down[@]} -eq 0 ]; then
        # Possibly still booting (started by a concurrent call): wait rather than lie.
        wait_ready "$START_TIMEOUT" "${running[@]}" || die "broker(s) running but not all answering on $(endpoints client)"
        if [ "$SASL" = 1 ]; then
            node_vars 1
            grep -q '^listeners=.*SASL_PLAINTEXT' "$NCONF" 2>/dev/null ||
                warn "running without a SASL listener: stop it and start again with KAFKA_SASL=1"
        fi
        if [ "$BROKERS" -eq 1 ]; then
            say "already running on 127.0.0.1:$PORT (pid $(cut -d: -f2 <<<"${running[0]}"))"
        else
            say "already running: $BROKERS brokers on $(endpoints client)"
        fi
        return
    fi
    for n in "${down[@]}"; do
        node_vars "$n"
        local ports=("$NPORT" "$NCPORT")
        if [ "$SASL" = 1 ]; then ports+=("$NSASL_PORT" "$NSSL_PORT"); fi
        for p in "${ports[@]}"; do
            port_open "$p" && die "port 127.0.0.1:$p is taken by another process (not our broker); set KAFKA_PORT/KAFKA_CONTROLLER_PORT/KAFKA_SASL_PORT, or KAFKA_BOOTSTRAP_SERVERS to use that cluster"
        done
    done
    ensure_java
    ensure_jars
    [ "$SASL" = 1 ] && ensure_tls
    for n in "${down[@]}"; do write_config "$n"; done
    ensure_format
    for n in "${down[@]}"; do launch_node "$n"; done

    PROBE_SASL=$SASL wait_ready "$START_TIMEOUT" "${running[@]}" "${LAUNCHED[@]}" || rc=$?
    [ "$rc" -eq 0 ] || launch_failed "$rc" "Kafka failed to start on $(endpoints client)"
    local extra=
    [ "$SASL" = 1 ] && extra="; $SCRAM on SASL_PLAINTEXT $(endpoints sasl), SASL_SSL $(endpoints ssl)"
    if [ "$BROKERS" -eq 1 ]; then
        say "ready on 127.0.0.1:$PORT$extra (started in $((SECONDS - t0))s)"
    else
        say "ready: $BROKERS brokers on $(endpoints client)$extra (started in $((SECONDS - t0))s)"
    fi
}

cmd_stop() {
    local n pid pids=()
    take_lock kafka
    for n in $(nodes); do
        pid=$(running_pid "$n")
        [ -n "$pid" ] && pids+=("$pid")
    done
    if [ ${#pids[@]} -eq 0 ]; then
        say "not running"
        return
    fi
    # SIGTERM = controlled shutdown (flushes logs, closes the KRaft log cleanly). All nodes
    # at once: stopped one by one, the last ones would wait for a controller quorum that is gone.
    kill_all_and_wait $((BROKERS == 1 ? 30 : 60)) "${pids[@]}"
    for n in $(nodes); do node_vars "$n"; rm -f "$NPIDFILE"; done
    say "stopped"
}

cmd_status() {
    local n pid missing=0
    if [ "$BROKERS" -eq 1 ]; then
        say_status "$(running_pid 1)"
        return
    fi
    for n in $(nodes); do
        pid=$(running_pid "$n")
        node_vars "$n"
        if [ -n "$pid" ]; then
            say "node $n: running on 127.0.0.1:$NPORT (pid $pid)"
        else
            say "node $n: not running (127.0.0.1:$NPORT)"
            missing=$((missing + 1))
        fi
    done
    [ "$missing" -eq 0 ] || return 3
}

# Node number argument of the *-broker commands.
node_arg() {
    case ${1:-} in
    [1-9]) [ "$1" -le "$BROKERS" ] && return ;;
    esac
    die "usage: $0 $CMD N, with N in 1..$BROKERS (the storage is formatted for $BROKERS broker(s))"
}

cmd_stop_broker() {
    local n=$1 pid t0=$SECONDS
    take_lock kafka
    pid=$(running_pid "$n")
    node_vars "$n"
    [ -n "$pid" ] || { say "node $n: not running"; return; }
    # Controlled shutdown: the controller moves the partitions this node leads first.
    kill_all_and_wait 60 "$pid"
    rm -f "$NPIDFILE"
    say "node $n: stopped (pid $pid, $((SECONDS - t0))s)"
}

cmd_kill_broker() {
    local n=$1 pid i
    take_lock kafka
    pid=$(running_pid "$n")
    node_vars "$n"
    [ -n "$pid" ] || { say "node $n: not running"; return; }
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do pid_gone "$pid" && break; sleep 0.1; done
    pid_gone "$pid" || die "node $n (pid $pid) survived SIGKILL"
    rm -f "$NPIDFILE"
    say "node $n: killed (pid $pid)"
}

cmd_start_broker() {
    local n=$1 pid rc=0 t0=$SECONDS p
    local -a LAUNCHED=() LOG_OFFSETS=() OUT_OFFSETS=()
    take_lock kafka
    START_TIMEOUT=${KAFKA_START_TIMEOUT:-$((BROKERS == 1 ? 60 : 120))}
    pid=$(running_pid "$n")
    node_vars "$n"
    if [ -n "$pid" ]; then
        wait_ready "$START_TIMEOUT" "$n:$pid:-:-1" || die "node $n (pid $pid) is running but not in the cluster metadata"
        say "node $n: already running on 127.0.0.1:$NPORT (pid $pid)"
        return
    fi
    # The node comes back as it was configured by the last `start` (listeners, SASL).
    if [ ! -f "$NCONF" ] || [ ! -f "$NDATA/meta.properties" ]; then
        die "node $n was never started here; use: $0 start"
    fi
    for p in $(sed -n 's/^listeners=//p' "$NCONF" | tr ',' '\n' | sed 's/.*://'); do
        port_open "$p" && die "port 127.0.0.1:$p is taken by another process (not node $n)"
    done
    ensure_java
    ensure_jars
    launch_node "$n"
    wait_ready "$START_TIMEOUT" "${LAUNCHED[@]}" || rc=$?
    [ "$rc" -eq 0 ] || launch_failed "$rc" "node $n failed to start on 127.0.0.1:$NPORT"
    node_vars "$n"
    say "node $n: back in the cluster on 127.0.0.1:$NPORT (pid $(cat "$NPIDFILE"), $((SECONDS - t0))s)"
}

# The SASL listener's client settings as KAFKA_* env lines (unified_msg_site/settings.py turns
# KAFKA_CONFIG_<PROPERTY> into librdkafka's property), read from node configs of the last start.
cmd_sasl_env() {
    local ssl=${1:-} n list="" protocol=SASL_PLAINTEXT ep
    [ -z "$ssl" ] || [ "$ssl" = ssl ] || die "usage: $0 sasl-env [ssl]"
    [ "$ssl" = ssl ] && protocol=SASL_SSL
    for n in $(nodes); do
        node_vars "$n"
        ep=$(sed -n 's/^listeners=//p' "$NCONF" 2>/dev/null | tr ',' '\n' | sed -n "s|^$protocol://||p" || true)
        [ -n "$ep" ] && list+=",$ep"
    done
    [ -n "$list" ] || die "no $protocol listener in $KDIR: start Kafka with KAFKA_SASL=1"
    echo "KAFKA_BOOTSTRAP_SERVERS=${list#,}"
    echo "KAFKA_CONFIG_SECURITY_PROTOCOL=$protocol"
    echo "KAFKA_CONFIG_SASL_MECHANISM=$SCRAM"
    echo "KAFKA_CONFIG_SASL_USERNAME=$SASL_USER"
    echo "KAFKA_CONFIG_SASL_PASSWORD=$SASL_PASSWORD"
    if [ "$ssl" = ssl ]; then echo "KAFKA_CONFIG_SSL_CA_LOCATION=$TLS_DIR/ca.pem"; fi
}

USAGE="usage: $0 start|stop|status|bootstrap|stop-broker N|kill-broker N|start-broker N|sasl-env [ssl]"

main() {
    CMD=${1:-}
    if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
        case $CMD in
        start | stop | status) say "external cluster $KAFKA_BOOTSTRAP_SERVERS is used (KAFKA_BOOTSTRAP_SERVERS); nothing to $CMD" ;;
        bootstrap) echo "$KAFKA_BOOTSTRAP_SERVERS" ;;
        *) die "external cluster $KAFKA_BOOTSTRAP_SERVERS is used (KAFKA_BOOTSTRAP_SERVERS): $CMD is for the private one. $USAGE" ;;
        esac
        return
    fi
    # `start` creates (or must match) the size in KAFKA_BROKERS; every other command works on
    # the cluster the storage was formatted for, so `stop` without KAFKA_BROKERS stops it all.
    local was
    was=$(formatted_brokers)
    if [ "$CMD" = start ] || [ -z "$was" ]; then BROKERS=$BROKERS_WANTED; else BROKERS=$was; fi
    case $CMD in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    bootstrap) endpoints client ;;
    stop-broker | kill-broker | start-broker)
        node_arg "${2:-}"
        "cmd_${CMD//-/_}" "$2"
        ;;
    sasl-env) cmd_sasl_env "${2:-}" ;;
    *) die "$USAGE" ;;
    esac
}

main "$@"
