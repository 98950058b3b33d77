#!/bin/sh
# gen-certs.sh DIR — make the TLS tests' certificates in DIR (which must exist) with the openssl
# command line: a CA, and keys plus certificates (PEM) named
#   server   signed by the CA for localhost and 127.0.0.1 (valid)
#   wrong    signed by the CA for wrong.example only (host-name mismatch)
#   expired  signed by the CA for localhost, valid January 2020 only
#   self     self-signed for localhost
#   client   signed by the CA, for client authentication
# EC P-256 keys: generated in milliseconds.
set -eu
cd "$1"
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

openssl req -x509 $EC -keyout ca.key -out ca.pem -days 3650 -subj "/CN=libloop test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null

# sign NAME CN SAN [openssl ca date options]
sign() {
    name=$1 cn=$2 san=$3
    shift 3
    openssl req -new $EC -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$san" > "$name.ext"
    if [ $# -gt 0 ]; then
        # openssl x509 cannot backdate in OpenSSL 3.0: `openssl ca` can (-startdate/-enddate)
        : > index.txt
        [ -f serial ] || echo 1000 > serial
        cat > ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = index.txt
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
serial = serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
CNF
        openssl ca -batch -notext -config ca.cnf -in "$name.csr" -out "$name.pem" \
            -extfile "$name.ext" "$@" 2>/dev/null
    else
        openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out "$name.pem" -days 365 -extfile "$name.ext" 2>/dev/null
    fi
}

sign server localhost "DNS:localhost,IP:127.0.0.1"
sign wrong wrong.example "DNS:wrong.example"
sign client "libloop test client" "DNS:client.example"
sign expired localhost "DNS:localhost,IP:127.0.0.1" -startdate 20200101000000Z -enddate 20200201000000Z

openssl req -x509 $EC -keyout self.key -out self.pem -days 365 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
