# shellcheck shell=bash
# Test certificates for the test bed's TLS listeners (sourced by
# services-up.sh after services-common.sh). Made once with openssl and reused.
# They live with the services, not the checkout: the servers listen on fixed
# ports and are shared by every checkout on the machine (a second checkout
# reuses running servers), so every checkout must trust the same CA. The
# directory is $TIDEMILL_TEST_TLS_DIR, by default /tmp/tidemill-test-tls
# (tests read the same variable and default):
#
#   ca.crt / ca.key          the test CA every server and client cert chains to
#   server.crt / server.key  the databases' certificate: SAN IP:127.0.0.1, DNS:localhost
#   client.crt / client.key  a client certificate, CN=tidemill_cert (PostgreSQL's
#                            `cert` auth maps the CN to that role; MariaDB's
#                            tidemill_x509 user REQUIREs an X509 cert from the CA)
#   other-ca.crt             an unrelated CA: trusting it instead must fail
#   rogue-client.crt / .key  a client cert signed by the unrelated CA: must be refused
#   kafka-server.pem         server.key + server.crt in one file, for Kafka's PEM keystore
#   wronghost.crt / .key     a server cert from the test CA for another name
#                            (DNS:elsewhere.invalid), and kafka-wronghost.pem:
#                            connecting to 127.0.0.1 must fail hostname checks
#
# Tests read the files from $TLS_DIR; nothing here is a real secret.

TLS_DIR="${TIDEMILL_TEST_TLS_DIR:-/tmp/tidemill-test-tls}"

# tls_sign NAME CA SUBJECT [SAN]: key and certificate NAME signed by CA.
tls_sign() {
    local name=$1 ca=$2 subject=$3 san=${4:-} ext
    ext="$(mktemp)"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' >"$ext"
    if [[ -n $san ]]; then
        printf 'extendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" >>"$ext"
    else
        printf 'extendedKeyUsage=clientAuth\n' >>"$ext"
    fi
    openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
        -keyout "$TLS_DIR/$name.key" -out "$TLS_DIR/$name.csr" 2>/dev/null
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/$ca.crt" -CAkey "$TLS_DIR/$ca.key" \
        -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$TLS_DIR/$name.crt" 2>/dev/null
    rm -f "$ext" "$TLS_DIR/$name.csr"
    chmod 600 "$TLS_DIR/$name.key"
}

# tls_ca NAME SUBJECT: a self-signed CA.
tls_ca() {
    openssl req -x509 -new -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.crt" 2>/dev/null
    chmod 600 "$TLS_DIR/$1.key"
}

# tls_material: make the files above that are missing. The CA is made once
# and kept: the running servers hold certificates it signed.
tls_material() {
    command -v openssl >/dev/null || die "tls: 'openssl' not found (apt-get install openssl)"
    if [[ ! -f $TLS_DIR/ca.crt || ! -f $TLS_DIR/ca.key ]]; then
        log "tls: making the test CA and certificates in $TLS_DIR"
        rm -rf "$TLS_DIR"
        mkdir -p "$TLS_DIR"
        chmod 700 "$TLS_DIR"
        tls_ca ca "/CN=tidemill test CA"
    fi
    [[ -f $TLS_DIR/other-ca.crt ]] || tls_ca other-ca "/CN=some other CA"
    [[ -f $TLS_DIR/server.crt ]] || tls_sign server ca "/CN=127.0.0.1" "IP:127.0.0.1,DNS:localhost"
    [[ -f $TLS_DIR/client.crt ]] || tls_sign client ca "/CN=tidemill_cert"
    [[ -f $TLS_DIR/rogue-client.crt ]] || tls_sign rogue-client other-ca "/CN=tidemill_cert"
    [[ -f $TLS_DIR/wronghost.crt ]] ||
        tls_sign wronghost ca "/CN=elsewhere.invalid" "DNS:elsewhere.invalid"
    local name
    for name in server wronghost; do
        if [[ ! -f $TLS_DIR/kafka-$name.pem ]]; then
            cat "$TLS_DIR/$name.key" "$TLS_DIR/$name.crt" >"$TLS_DIR/kafka-$name.pem"
            chmod 600 "$TLS_DIR/kafka-$name.pem"
        fi
    done
}
