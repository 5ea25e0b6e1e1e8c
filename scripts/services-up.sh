#!/usr/bin/env bash
# Start the local test bed for tidemill, without Docker:
#
#   * Apache Kafka 4.4.0, KRaft, single node  -> 127.0.0.1:9092
#     (jars fetched from Maven Central via scripts/kafka/pom.xml)
#   * PostgreSQL (Debian package, own data dir) -> 127.0.0.1:5432
#   * MariaDB (Debian package, own data dir)    -> 127.0.0.1:3306
#
# Idempotent: a service that already answers on its port is reused (and the
# script says so); otherwise it is initialised once and started. All state
# lives under .services/ in the repository root. Stop with services-down.sh.
#
# Requires: java (17+), mvn, kcat, postgresql, mariadb-server (.ci/run
# installs them on Debian).
set -euo pipefail

LOG_TAG=services-up
# shellcheck source=scripts/lib/services-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/services-common.sh"
# shellcheck source=scripts/lib/tls.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/tls.sh"
cd "$REPO_ROOT"

# How long each service may take to become ready.
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-60}
MARIADB_START_TIMEOUT=${MARIADB_START_TIMEOUT:-60}

mkdir -p "$SERVICES_DIR"

# Serialise concurrent invocations (e.g. two `make test` at once). The daemons
# started below get "9>&-" so they do not inherit (and keep holding) the lock.
exec 9>"$SERVICES_DIR/.lock"
flock -w 300 9 || die "another services-up.sh is still running"

for tool in java kcat psql mariadb mariadbd mariadb-install-db mariadb-admin openssl; do
    command -v "$tool" >/dev/null || die "'$tool' not found (scripts/install-deps.sh services installs it)"
done

# =============================================================================
# Kafka
# =============================================================================

KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
# The broker's version and the shape of its config and metadata (secured
# listeners, SCRAM users): a running broker or a data directory made for
# another layout is replaced (test data only).
KAFKA_LAYOUT="$KAFKA_VERSION+secured-1"
KAFKA_BOOTSTRAP="$HOST:$KAFKA_PORT"
KAFKA_PROBE_TOPIC=tidemill-services-probe

# kafka_answers: the broker returns cluster metadata. (The port check first
# avoids kcat's metadata timeout when nothing listens at all.)
kafka_answers() {
    port_open "$KAFKA_PORT" && kcat -b "$KAFKA_BOOTSTRAP" -L -m 3 >/dev/null 2>&1
}

# kafka_java MAINCLASS ARGS...: run a Kafka main class with the cached jars.
kafka_java() {
    java -Xmx512m -cp "$KAFKA_LIBS/*" \
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-tools.yaml" "$@"
}

# kafka_fetch_libs: copy the broker and its runtime dependencies from Maven
# Central into .services/kafka/libs, once per version of the POM.
kafka_fetch_libs() {
    local pom="$REPO_ROOT/scripts/kafka/pom.xml" stamp
    stamp="$KAFKA_LIBS/.complete-$(sha256sum "$pom" | cut -c1-16)"
    if [[ -f $stamp ]]; then
        log "kafka: using cached jars in ${KAFKA_LIBS#"$REPO_ROOT"/}"
        return
    fi
    log "kafka: fetching Kafka $KAFKA_VERSION jars from Maven Central (first run only)..."
    command -v mvn >/dev/null || die "kafka: 'mvn' not found (apt-get install maven)"
    rm -rf "$KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    mkdir -p "$KAFKA_LOGS"
    if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$KAFKA_LIBS" >"$KAFKA_LOGS/maven-fetch.log" 2>&1; then
        tail -n 30 "$KAFKA_LOGS/maven-fetch.log" >&2
        die "kafka: Maven could not fetch the Kafka jars (log above)"
    fi
    [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] ||
        die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after the Maven fetch"
    touch "$stamp"
}

# connect_fetch_libs: Kafka Connect and Debezium's PostgreSQL connector from
# Maven Central into .services/connect/libs, once per version of the POM.
# Tests and `make demo-cdc` start their own standalone workers from them
# (tests/common/connect.rs, scripts/demo-cdc.sh).
CONNECT_LIBS="$SERVICES_DIR/connect/libs"
connect_fetch_libs() {
    local pom="$REPO_ROOT/scripts/kafka/connect-pom.xml" stamp log="$SERVICES_DIR/connect/maven-fetch.log"
    stamp="$CONNECT_LIBS/.complete-$(sha256sum "$pom" | cut -c1-16)"
    [[ -f $stamp ]] && return
    log "connect: fetching Kafka Connect and Debezium jars from Maven Central (first run only)..."
    rm -rf "$CONNECT_LIBS"
    mkdir -p "$CONNECT_LIBS"
    if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$CONNECT_LIBS" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "connect: Maven could not fetch the Kafka Connect / Debezium jars (log above)"
    fi
    compgen -G "$CONNECT_LIBS/debezium-connector-postgres-*.jar" >/dev/null ||
        die "connect: debezium-connector-postgres missing after the Maven fetch"
    touch "$stamp"
}

# kafka_probe: end-to-end check — produce one record to an auto-created topic
# and read it back through a consumer group (exercises topic auto-creation,
# the group coordinator and __consumer_offsets, which tests rely on).
kafka_probe() {
    local marker="probe-$$-$RANDOM"
    printf '%s\n' "$marker" |
        timeout 30 kcat -b "$KAFKA_BOOTSTRAP" -P -t "$KAFKA_PROBE_TOPIC" -X message.timeout.ms=20000 ||
        return 1
    timeout 30 kcat -b "$KAFKA_BOOTSTRAP" -C -t "$KAFKA_PROBE_TOPIC" -o -1 -c 1 -e -q >/dev/null ||
        return 1
    timeout 30 kcat -b "$KAFKA_BOOTSTRAP" -G tidemill-services-probe "$KAFKA_PROBE_TOPIC" \
        -X auto.offset.reset=earliest -c 1 -q >/dev/null ||
        return 1
}

# kafka_start: start the broker unless one already answers. Sets KAFKA_PID
# ("" when an existing broker is reused). Does not wait for it to be ready, so
# the databases can start while the JVM boots; kafka_wait does the waiting.
KAFKA_PID=""
kafka_start() {
    local pid cluster_id

    # The jars are needed even when a broker is reused: tests start private
    # brokers of their own from them (tests/common/private_kafka.rs).
    mkdir -p "$KAFKA_DIR" "$KAFKA_LOGS"
    kafka_fetch_libs
    connect_fetch_libs

    if kafka_answers; then
        if pid="$(read_pid "$KAFKA_PID_FILE" kafka.Kafka)"; then
            if [[ $(cat "$KAFKA_DIR/running-version" 2>/dev/null) == "$KAFKA_LAYOUT" ]]; then
                log "kafka: already running (pid $pid) on $KAFKA_BOOTSTRAP, reusing it"
                return
            fi
            # An older test bed's broker: the tests need this version's features.
            log "kafka: pid $pid is not Kafka $KAFKA_LAYOUT; stopping it to start $KAFKA_LAYOUT"
            kill -TERM "$pid"
            wait_pid_exit "$pid" 60 || die "kafka: pid $pid did not stop"
        else
            log "kafka: something already answers on $KAFKA_BOOTSTRAP (not started from ${SERVICES_DIR}), reusing it"
            return
        fi
    fi

    mkdir -p "$KAFKA_DATA"

    # (Re)write the configuration every time so edits to the templates apply.
    sed "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" "$REPO_ROOT/scripts/kafka/server.properties" >"$KAFKA_PROPS"
    sed "s|@TLS_DIR@|$TLS_DIR|g" "$REPO_ROOT/scripts/kafka/secured.properties" >>"$KAFKA_PROPS"
    cp "$REPO_ROOT/scripts/kafka/log4j2.yaml" "$KAFKA_DIR/log4j2.yaml"
    # The one-shot tools (StorageTool) only log warnings, to stderr.
    printf '%s\n' 'Configuration:' '  Appenders:' '    Console:' '      name: stderr' \
        '      target: SYSTEM_ERR' '      PatternLayout:' '        pattern: "[%d] %p %m (%c)%n"' \
        '  Loggers:' '    Root:' '      level: WARN' '      AppenderRef:' '        - ref: stderr' \
        >"$KAFKA_DIR/log4j2-tools.yaml"

    if pid="$(read_pid "$KAFKA_PID_FILE" kafka.Kafka)"; then
        # Started earlier but not answering yet (still booting): just wait.
        log "kafka: process $pid exists but is not answering yet; will wait for it"
        KAFKA_PID=$pid
        return
    fi
    if port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; then
        die "kafka: port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by something that does not answer as a Kafka broker"
    fi

    # Test data does not survive a Kafka version change: start afresh.
    if [[ -f $KAFKA_DATA/meta.properties && $(cat "$KAFKA_DIR/data-version" 2>/dev/null) != "$KAFKA_LAYOUT" ]]; then
        log "kafka: the data directory was made by another Kafka version or layout; recreating it"
        rm -rf "$KAFKA_DATA"
        mkdir -p "$KAFKA_DATA"
    fi
    # Format the KRaft storage once (meta.properties marks it formatted).
    if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
        cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid | tail -n1)"
        log "kafka: formatting KRaft storage (cluster id $cluster_id)"
        kafka_java kafka.tools.StorageTool format --ignore-formatted \
            -t "$cluster_id" -c "$KAFKA_PROPS" \
            --add-scram 'SCRAM-SHA-512=[name=tidemill,password=tidemill-scram]' \
            >"$KAFKA_LOGS/format.log" 2>&1 ||
            die "kafka: storage format failed, see $KAFKA_LOGS/format.log"
        echo "$KAFKA_LAYOUT" >"$KAFKA_DIR/data-version"
    fi

    log "kafka: starting Kafka $KAFKA_VERSION in the background (logs in ${KAFKA_LOGS#"$REPO_ROOT"/})"
    # JVM flags as in the official kafka-server-start.sh / kafka-run-class.sh.
    nohup java -Xms256m -Xmx1g \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_LOGS" \
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
        >>"$KAFKA_LOGS/kafka.out" 2>&1 </dev/null 9>&- &
    KAFKA_PID=$!
    echo "$KAFKA_PID" >"$KAFKA_PID_FILE"
    echo "$KAFKA_LAYOUT" >"$KAFKA_DIR/running-version"
}

# kafka_ready: the broker we started answers; fail fast if its JVM died.
kafka_ready() {
    if ! kill -0 "$KAFKA_PID" 2>/dev/null; then
        tail -n 30 "$KAFKA_LOGS/kafka.out" "$KAFKA_LOGS/server.log" >&2 2>/dev/null || true
        die "kafka: the broker process exited during start-up (logs above)"
    fi
    kafka_answers
}

# kafka_wait: wait for a broker started by kafka_start, then check that it
# really serves produce/consume.
kafka_wait() {
    if [[ -n $KAFKA_PID ]]; then
        wait_for "$KAFKA_START_TIMEOUT" "Kafka on $KAFKA_BOOTSTRAP" kafka_ready ||
            die "kafka: not answering; see $KAFKA_LOGS/server.log"
        log "kafka: broker answers on $KAFKA_BOOTSTRAP (pid $KAFKA_PID)"
    fi
    wait_for 60 "a produce/consume round trip on Kafka" kafka_probe ||
        die "kafka: broker answers metadata but produce/consume fails; see $KAFKA_LOGS/server.log"
    log "kafka: produce/consume round trip OK (topic $KAFKA_PROBE_TOPIC)"
}

# =============================================================================
# PostgreSQL
# =============================================================================

# pg_answers: the tidemill role can log in over TCP with its password.
pg_answers() {
    PGCONNECT_TIMEOUT=3 psql "$PG_URL" -XAtqc 'select 1' >/dev/null 2>&1
}

# pg_dir: resolve (and create if needed) the directory holding data/ and the
# log. Under root it must be reachable by the "postgres" OS user; if the
# repository is not (e.g. it lives under /root), the directory is placed under
# /var/lib/postgresql and .services/pg becomes a symlink to it.
pg_dir() {
    local dir
    if [[ -L $PG_LINK || -d $PG_LINK ]]; then
        dir="$(readlink -f "$PG_LINK")"
    else
        dir="$PG_LINK"
        mkdir -p "$dir"
        if is_root && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
            rmdir "$dir"
            dir="/var/lib/postgresql/tidemill-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
            warn "postgres: the 'postgres' OS user cannot reach $REPO_ROOT; keeping its data in $dir (linked from .services/pg)"
            mkdir -p "$dir"
            ln -sfn "$dir" "$PG_LINK"
        fi
    fi
    mkdir -p "$dir"
    is_root && chown postgres:postgres "$dir"
    chmod 700 "$dir"
    echo "$dir"
}

# pg_stop_debian_main: if Debian's default cluster ("main", created by the
# postgresql package) occupies our port, stop it — the tidemill cluster needs
# 5432 and its own settings. It is only stopped, not removed or reconfigured.
pg_stop_debian_main() {
    local ver name port status
    command -v pg_lsclusters >/dev/null || return 1
    while read -r ver name port status _; do
        if [[ $port == "$PG_PORT" && $status == online* ]]; then
            warn "postgres: Debian's cluster $ver/$name occupies port $PG_PORT; stopping it (pg_ctlcluster $ver $name stop) so the tidemill cluster can use the port"
            pg_ctlcluster "$ver" "$name" stop
            return 0
        fi
    done < <(pg_lsclusters --no-header 2>/dev/null)
    return 1
}

# pg_write_config DATA: our settings, TLS files and access rules, rewritten on
# every start (and before a reload) so edits here take effect. TLS is on with
# the test CA's server certificate; the role tidemill_cert logs in with a
# client certificate only (`cert`), tidemill_tls with a password over TLS only.
pg_write_config() {
    local data=$1 f
    cat >"$data/tidemill.conf" <<EOF
# Written by scripts/services-up.sh; edits are overwritten.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = ''   # TCP only; avoids socket-path permission issues
max_connections = 300          # tests run in parallel
password_encryption = scram-sha-256
ssl = on
ssl_cert_file = 'tls-server.crt'
ssl_key_file = 'tls-server.key'
ssl_ca_file = 'tls-ca.crt'
# Durability settings at their defaults (tests must see real behaviour).
fsync = on
synchronous_commit = on
full_page_writes = on
# Change data capture tests run Debezium's PostgreSQL connector (pgoutput).
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
EOF
    cp "$TLS_DIR/server.crt" "$data/tls-server.crt"
    cp "$TLS_DIR/server.key" "$data/tls-server.key"
    cp "$TLS_DIR/ca.crt" "$data/tls-ca.crt"
    chmod 600 "$data/tls-server.key"
    # Access over TCP only, always with a password or a client certificate.
    cat >"$data/pg_hba.conf" <<EOF
# Written by scripts/services-up.sh; edits are overwritten.
# TYPE     DATABASE  USER           ADDRESS        METHOD
hostssl    all       tidemill_cert  127.0.0.1/32   cert
host       all       tidemill_cert  127.0.0.1/32   reject
hostssl    all       tidemill_tls   127.0.0.1/32   scram-sha-256
host       all       tidemill_tls   127.0.0.1/32   reject
host       all       all            127.0.0.1/32   scram-sha-256
host       all       all            ::1/128        scram-sha-256
EOF
    if is_root; then
        for f in tidemill.conf pg_hba.conf tls-server.crt tls-server.key tls-ca.crt; do
            chown postgres:postgres "$data/$f"
        done
    fi
}

# pg_tls_roles: the roles the TLS tests log in as (idempotent).
pg_tls_roles() {
    PGCONNECT_TIMEOUT=5 psql "$PG_URL" -XAtq -v ON_ERROR_STOP=1 >/dev/null <<EOF
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tidemill_cert') THEN
    CREATE ROLE tidemill_cert LOGIN SUPERUSER;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tidemill_tls') THEN
    CREATE ROLE tidemill_tls LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
EOF
}

# pg_tls_on: the server we reach speaks TLS with a certificate from our test CA.
pg_tls_on() {
    [[ $(PGCONNECT_TIMEOUT=3 psql "$PG_URL?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.crt" \
        -XAtqc 'show ssl' 2>/dev/null) == on ]]
}

# pg_reuse_with_tls: a cluster of ours that was started without TLS (an
# older test bed) or with other certificates gets the current config and a
# reload (ssl settings are reloadable).
pg_reuse_with_tls() {
    local bin data
    pg_tls_on && return
    data="$(readlink -f "$PG_LINK" 2>/dev/null || true)/data"
    [[ -f $data/PG_VERSION ]] || die "postgres: the server on $HOST:$PG_PORT has TLS off or a certificate not from $TLS_DIR/ca.crt, and is not ours to reconfigure (stop it, or set TIDEMILL_TEST_TLS_DIR to the test CA it uses)"
    bin="$(pg_bin_dir)"
    log "postgres: turning TLS on in the running cluster (reload)"
    pg_write_config "$data"
    as_pg_user "$bin/pg_ctl" -D "$data" reload >/dev/null
    wait_for 30 "PostgreSQL to serve TLS" pg_tls_on || die "postgres: TLS still off after a reload"
}

# pg_logical: the server we reach keeps logical WAL (Debezium needs it).
pg_logical() {
    [[ $(PGCONNECT_TIMEOUT=3 psql "$PG_URL" -XAtqc 'show wal_level' 2>/dev/null) == logical ]]
}

# pg_reuse_with_logical_wal: a cluster of ours started before the change
# data capture tests gets the current config and a restart (wal_level is
# read at start only).
pg_reuse_with_logical_wal() {
    local bin data
    pg_logical && return
    data="$(readlink -f "$PG_LINK" 2>/dev/null || true)/data"
    [[ -f $data/PG_VERSION ]] || die "postgres: the server on $HOST:$PG_PORT has wal_level below logical and is not ours to reconfigure (stop it, or set wal_level = logical)"
    bin="$(pg_bin_dir)"
    log "postgres: restarting the running cluster with wal_level = logical"
    pg_write_config "$data"
    as_pg_user "$bin/pg_ctl" -D "$data" -l "$(dirname "$data")/postgres.log" -w -t "$PG_START_TIMEOUT" restart >/dev/null 9>&- ||
        die "postgres: pg_ctl restart failed; see $(dirname "$data")/postgres.log"
    wait_for "$PG_START_TIMEOUT" "PostgreSQL on $HOST:$PG_PORT" pg_answers ||
        die "postgres: not accepting $PG_USER logins after the restart"
}

pg_up() {
    local bin dir data pwfile

    if pg_answers; then
        log "postgres: already answers on $HOST:$PG_PORT as '$PG_USER', reusing it"
        pg_reuse_with_tls
        pg_reuse_with_logical_wal
        pg_tls_roles || die "postgres: could not create the TLS test roles"
        return
    fi
    if port_open "$PG_PORT"; then
        pg_stop_debian_main ||
            die "postgres: port $PG_PORT is taken by something that does not accept $PG_USER/$PG_PASSWORD"
        wait_for 30 "port $PG_PORT to be released" bash -c "! (exec 3<>/dev/tcp/$HOST/$PG_PORT) 2>/dev/null" ||
            die "postgres: port $PG_PORT still busy"
    fi

    bin="$(pg_bin_dir)" || die "postgres: server binaries not found (apt-get install postgresql)"
    dir="$(pg_dir)"
    data="$dir/data"

    # One-time initialisation. The bootstrap superuser is "tidemill" itself,
    # with a SCRAM password; there is no Unix socket (TCP on 127.0.0.1 only).
    if [[ ! -f $data/PG_VERSION ]]; then
        log "postgres: initialising a new cluster in $data ($("$bin/postgres" --version))"
        pwfile="$dir/.pwfile"
        printf '%s\n' "$PG_PASSWORD" >"$pwfile"
        is_root && chown postgres:postgres "$pwfile"
        as_pg_user "$bin/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" \
            --auth=scram-sha-256 --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
            die "postgres: initdb failed, see $dir/initdb.log"
        rm -f "$pwfile"
        # Pull in our settings file (written below) from the stock config.
        echo "include_if_exists = 'tidemill.conf'" >>"$data/postgresql.conf"
    fi

    if [[ $(cat "$data/PG_VERSION") != "$("$bin/postgres" --version | sed -E 's/.* ([0-9]+)\..*/\1/')" ]]; then
        die "postgres: $data was created by PostgreSQL $(cat "$data/PG_VERSION"), but $bin is another major version; remove $dir to recreate it"
    fi

    pg_write_config "$data"

    log "postgres: starting (log in $dir/postgres.log)"
    as_pg_user "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t "$PG_START_TIMEOUT" start >/dev/null 9>&- ||
        {
            tail -n 20 "$dir/postgres.log" >&2 || true
            die "postgres: pg_ctl start failed (log above)"
        }
    wait_for "$PG_START_TIMEOUT" "PostgreSQL on $HOST:$PG_PORT" pg_answers ||
        die "postgres: not accepting $PG_USER logins; see $dir/postgres.log"
    pg_tls_roles || die "postgres: could not create the TLS test roles"
    log "postgres: answers on $HOST:$PG_PORT (TLS on)"
}

# =============================================================================
# MariaDB
# =============================================================================

# mariadb_answers: the tidemill user can log in over TCP with its password.
mariadb_answers() {
    mariadb --no-defaults -h "$HOST" -P "$MARIADB_PORT" -u "$MARIADB_USER" -p"$MARIADB_PASSWORD" \
        --connect-timeout=3 -e 'select 1' >/dev/null 2>&1
}

# mariadb_admin_sql SQL: run SQL as the install-time admin account over our
# own socket (unix_socket auth as the current OS user; root when root).
mariadb_admin_sql() {
    mariadb --no-defaults --socket="$MARIADB_SOCKET" -u "$(id -un)" -e "$1"
}

# mariadb_socket_alive: the server answers on its socket (before the tidemill
# user exists).
mariadb_socket_alive() {
    mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" -u "$(id -un)" \
        --connect-timeout=2 ping >/dev/null 2>&1
}

# mariadb_stop_debian_default: if Debian's own server (socket in /run/mysqld,
# started by the package or systemd) occupies our port, shut it down.
mariadb_stop_debian_default() {
    local sock=/run/mysqld/mysqld.sock
    [[ -S $sock ]] || return 1
    mariadb --no-defaults --socket="$sock" -u root -NBe "select @@port" 2>/dev/null |
        grep -qx "$MARIADB_PORT" || return 1
    warn "mariadb: Debian's default server (socket $sock) occupies port $MARIADB_PORT; shutting it down so the tidemill instance can use the port"
    mariadb-admin --no-defaults --socket="$sock" -u root shutdown
}

# mariadb_tls_on: the server we reach speaks TLS with a certificate from our test CA.
mariadb_tls_on() {
    [[ $(mariadb --no-defaults -h "$HOST" -P "$MARIADB_PORT" -u "$MARIADB_USER" -p"$MARIADB_PASSWORD" \
        --ssl-ca="$TLS_DIR/ca.crt" --ssl-verify-server-cert \
        --connect-timeout=3 -NBe "select @@have_ssl" 2>/dev/null) == YES ]]
}

mariadb_up() {
    local pid run_as=()

    if mariadb_answers; then
        if pid="$(read_pid "$MARIADB_PID_FILE" mariadbd)"; then
            if ! mariadb_tls_on; then
                # Started by an older test bed without TLS (or other certificates):
                # TLS files are read at start-up only.
                log "mariadb: running without our test CA's TLS (pid $pid); restarting it"
                kill -TERM "$pid"
                wait_pid_exit "$pid" 60 || die "mariadb: pid $pid did not stop"
            else
                log "mariadb: already running (pid $pid) on $HOST:$MARIADB_PORT, reusing it"
                return
            fi
        else
            mariadb_tls_on || die "mariadb: the server on $HOST:$MARIADB_PORT has TLS off or a certificate not from $TLS_DIR/ca.crt, and is not ours to restart (stop it, or set TIDEMILL_TEST_TLS_DIR to the test CA it uses)"
            log "mariadb: already answers on $HOST:$MARIADB_PORT as '$MARIADB_USER', reusing it"
            return
        fi
    fi

    mkdir -p "$MARIADB_DIR"
    # mariadbd refuses to run as root unless told to explicitly.
    is_root && run_as=(--user=root)

    cat >"$MARIADB_CNF" <<EOF
# Written by scripts/services-up.sh; edits are overwritten.
[mysqld]
datadir=$MARIADB_DIR/data
socket=$MARIADB_SOCKET
pid-file=$MARIADB_PID_FILE
log-error=$MARIADB_DIR/mariadb.err
bind-address=$HOST
port=$MARIADB_PORT
skip-name-resolve
max_connections=300
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
innodb_buffer_pool_size=256M
# TLS with the test CA's server certificate (tidemill_tls REQUIREs SSL,
# tidemill_x509 a client certificate from that CA).
ssl_ca=$TLS_DIR/ca.crt
ssl_cert=$TLS_DIR/server.crt
ssl_key=$TLS_DIR/server.key
# Durability at its defaults (innodb_flush_log_at_trx_commit=1, sync_binlog).
EOF

    if pid="$(read_pid "$MARIADB_PID_FILE" mariadbd)"; then
        log "mariadb: process $pid exists but is not answering yet; waiting for it"
    else
        if port_open "$MARIADB_PORT"; then
            mariadb_stop_debian_default ||
                die "mariadb: port $MARIADB_PORT is taken by something that does not accept $MARIADB_USER/$MARIADB_PASSWORD"
            wait_for 30 "port $MARIADB_PORT to be released" bash -c "! (exec 3<>/dev/tcp/$HOST/$MARIADB_PORT) 2>/dev/null" ||
                die "mariadb: port $MARIADB_PORT still busy"
        fi

        if [[ ! -d $MARIADB_DIR/data/mysql ]]; then
            log "mariadb: initialising a new data directory in $MARIADB_DIR/data ($(mariadbd --version | awk '{print $3}'))"
            mariadb-install-db --defaults-file="$MARIADB_CNF" "${run_as[@]}" \
                --skip-test-db --auth-root-authentication-method=socket \
                >"$MARIADB_DIR/install-db.log" 2>&1 ||
                die "mariadb: mariadb-install-db failed, see $MARIADB_DIR/install-db.log"
        fi

        rm -f "$MARIADB_SOCKET"
        log "mariadb: starting (log in ${MARIADB_DIR#"$REPO_ROOT"/}/mariadb.err)"
        nohup mariadbd --defaults-file="$MARIADB_CNF" "${run_as[@]}" \
            >>"$MARIADB_DIR/mariadbd.out" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$MARIADB_PID_FILE"
    fi

    mariadb_ready() {
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$MARIADB_DIR/mariadb.err" >&2 2>/dev/null || true
            die "mariadb: the server exited during start-up (log above)"
        }
        mariadb_socket_alive
    }
    wait_for "$MARIADB_START_TIMEOUT" "MariaDB socket" mariadb_ready ||
        die "mariadb: not answering; see $MARIADB_DIR/mariadb.err"

    # Create/refresh the tidemill account (idempotent). Anonymous accounts
    # would shadow it for local connections, so drop any.
    mariadb_admin_sql "
        DELETE FROM mysql.global_priv WHERE User = '';
        FLUSH PRIVILEGES;
        CREATE USER IF NOT EXISTS '$MARIADB_USER'@'%' IDENTIFIED BY '$MARIADB_PASSWORD';
        CREATE USER IF NOT EXISTS '$MARIADB_USER'@'127.0.0.1' IDENTIFIED BY '$MARIADB_PASSWORD';
        CREATE USER IF NOT EXISTS '$MARIADB_USER'@'localhost' IDENTIFIED BY '$MARIADB_PASSWORD';
        GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'%' WITH GRANT OPTION;
        GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'127.0.0.1' WITH GRANT OPTION;
        GRANT ALL PRIVILEGES ON *.* TO '$MARIADB_USER'@'localhost' WITH GRANT OPTION;
        CREATE USER IF NOT EXISTS 'tidemill_tls'@'%' IDENTIFIED BY '$MARIADB_PASSWORD' REQUIRE SSL;
        GRANT ALL PRIVILEGES ON *.* TO 'tidemill_tls'@'%';
        CREATE USER IF NOT EXISTS 'tidemill_x509'@'%' IDENTIFIED BY '$MARIADB_PASSWORD' REQUIRE X509;
        GRANT ALL PRIVILEGES ON *.* TO 'tidemill_x509'@'%';
        FLUSH PRIVILEGES;" ||
        die "mariadb: could not create the '$MARIADB_USER' account"

    wait_for 30 "MariaDB on $HOST:$MARIADB_PORT" mariadb_answers ||
        die "mariadb: not accepting $MARIADB_USER logins over TCP"
    log "mariadb: answers on $HOST:$MARIADB_PORT (pid $pid)"
}

# =============================================================================
# Main
# =============================================================================

started=$SECONDS
# Kafka's JVM is the slowest to boot, so launch it first, bring up the
# databases meanwhile, then wait for Kafka.
tls_material
kafka_start
pg_up
mariadb_up
kafka_wait

cat <<EOF

[$LOG_TAG] all services are up ($((SECONDS - started))s):
  Kafka       $KAFKA_BOOTSTRAP (secured: SASL_SSL 127.0.0.1:9094, mTLS :9095; scripts/kafka/secured.properties)
  PostgreSQL  $PG_URL
  MariaDB     $MARIADB_URL
  TLS         test CA and certificates in $TLS_DIR
  state/logs  ${SERVICES_DIR}
  stop with   scripts/services-down.sh
EOF
