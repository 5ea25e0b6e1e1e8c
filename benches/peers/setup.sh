#!/usr/bin/env bash
# Installs everything the peer runners need under target/bench/peers/ (idempotent):
#   flink-venv/  PyFlink (apache-flink) on Debian's python3
#   quix-venv/   Quix Streams + psycopg2 (also runs run.sh's driver, fill.py and the verifier)
#   jars/        Flink Kafka SQL connector, Flink JDBC connector, PostgreSQL JDBC driver (Maven Central)
# Versions are pinned below; see benches/peers/README.md for why these.
set -euo pipefail

FLINK_VERSION=1.19.3            # PyPI apache-flink; supports Python 3.8-3.11 and Java 17
FLINK_KAFKA_JAR=3.2.0-1.19      # org.apache.flink:flink-sql-connector-kafka
FLINK_JDBC_JAR=3.2.0-1.19       # org.apache.flink:flink-connector-jdbc (PostgreSQL dialect included)
PG_JDBC=42.7.4                  # org.postgresql:postgresql
QUIX_VERSION=3.28.1             # PyPI quixstreams
PSYCOPG2_VERSION=2.9.13         # PyPI psycopg2-binary (Quix's PostgreSQLSink needs psycopg2)
MAVEN=${MAVEN_CENTRAL:-https://repo1.maven.org/maven2}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR="$ROOT/target/bench/peers"
PY=/usr/bin/python3
mkdir -p "$DIR/jars"

say() { echo "peers/setup: $*"; }
die() { echo "peers/setup: error: $*" >&2; exit 1; }

[ -x "$PY" ] || die "$PY not found (Debian 12's python3 is expected)"
"$PY" -c 'import sys; assert sys.version_info[:2] <= (3, 11), sys.version' \
  || die "PyFlink $FLINK_VERSION supports Python <= 3.11; $PY is $("$PY" --version)"
command -v java >/dev/null || die "java not found: install a JDK 11 or 17 (apt-get install openjdk-17-jre-headless)"

if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    say "python3-venv is missing: installing it with apt-get"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv \
      || die "apt-get install python3-venv failed"
  else
    die "python3-venv is missing: run 'sudo apt-get install python3-venv' and re-run"
  fi
fi

venv() { # venv <dir> <name==version...>; installs only what is missing or another version
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ]; then
    say "creating venv $dir"
    "$PY" -m venv "$dir" || die "python3 -m venv $dir failed"
  fi
  if ! "$dir/bin/python" - "$@" <<'PY'
import importlib.metadata as m, sys
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    try:
        if m.version(name) != version:
            sys.exit(1)
    except m.PackageNotFoundError:
        sys.exit(1)
PY
  then
    say "installing $* into $dir (PyFlink downloads ~250 MB and builds for a few minutes)"
    "$dir/bin/pip" install -q "$@" || die "pip install $* failed"
  else
    say "$dir already has $*"
  fi
}
venv "$DIR/flink-venv" "apache-flink==$FLINK_VERSION"
venv "$DIR/quix-venv" "quixstreams==$QUIX_VERSION" "psycopg2-binary==$PSYCOPG2_VERSION"

jar() { # jar <group path> <artifact> <version>: downloads and checks the .sha1 from Maven Central
  local g=$1 a=$2 v=$3 f="$DIR/jars/$2-$3.jar"
  local url="$MAVEN/$g/$a/$v/$a-$v.jar"
  if [ -s "$f" ] && [ -s "$f.sha1" ] && [ "$(sha1sum "$f" | cut -c1-40)" = "$(cut -c1-40 "$f.sha1")" ]; then
    say "have $(basename "$f")"
    return
  fi
  say "downloading $url"
  curl -fsSL -o "$f.tmp" "$url" || die "download failed: $url"
  curl -fsSL -o "$f.sha1" "$url.sha1" || die "download failed: $url.sha1"
  [ "$(sha1sum "$f.tmp" | cut -c1-40)" = "$(cut -c1-40 "$f.sha1")" ] || die "sha1 mismatch for $url"
  mv "$f.tmp" "$f"
}
jar org/apache/flink flink-sql-connector-kafka "$FLINK_KAFKA_JAR"
jar org/apache/flink flink-connector-jdbc "$FLINK_JDBC_JAR"
jar org/postgresql postgresql "$PG_JDBC"

"$DIR/flink-venv/bin/python" -c 'import pyflink' || die "pyflink does not import"
"$DIR/quix-venv/bin/python" -c "import quixstreams, psycopg2, confluent_kafka" 2>/dev/null || die "quixstreams does not import"
say "ready: $DIR"
