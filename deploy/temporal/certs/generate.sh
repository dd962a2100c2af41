#!/usr/bin/env bash
# Certificates for the compose stack's mTLS override (docker-compose.mtls.yml,
# deploy/README.md): a CA, a certificate for the Temporal server and one for
# its clients, written beside this script.
#
#   deploy/temporal/certs/generate.sh           writes them unless they all exist
#   deploy/temporal/certs/generate.sh --force   replaces them (restart the stack after)
#
#   ca.pem                  the CA every side trusts
#   server.pem server.key   the frontend's and the internode certificate:
#                           DNS temporal (the service name the containers dial,
#                           and the name they verify), DNS localhost and IP
#                           127.0.0.1 (the published port); also a client
#                           certificate, because the server's own services
#                           present it to each other and to the frontend
#   client.pem client.key   the worker, the callback receiver, the starter,
#                           the admin tools and the Web UI
#
# The CA's key is thrown away once the two certificates are signed: this CA
# can sign nothing else, and a new client means running the script again
# with --force (every certificate changes). Nothing here is committed
# (.gitignore). DEMO ONLY: the keys are readable by every user, because the
# containers read them through bind mounts as their own users (uid 1000 in
# Temporal's images, 10001 in ours); a real deployment takes certificates
# from its PKI and mounts them as secrets.
#
# Environment: CERT_DAYS validity in days [825].
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
days=${CERT_DAYS:-825}
files="ca.pem server.pem server.key client.pem client.key"

die() { echo "generate.sh: error: $*" >&2; exit 1; }

force=
case "${1:-}" in
"") ;;
--force) force=1 ;;
*) die "usage: $0 [--force]" ;;
esac
[[ $days =~ ^[1-9][0-9]*$ ]] || die "CERT_DAYS must be a positive number of days (got '$days')"
command -v openssl >/dev/null || die "openssl is not on PATH (apt-get install openssl)"

missing=
for f in $files; do [ -e "$dir/$f" ] || missing=1; done
if [ -z "$missing" ] && [ -z "$force" ]; then
	echo "generate.sh: $dir already has $files; --force replaces them" >&2
	exit 0
fi

# Everything is made in a private directory and moved in at the end, so an
# interrupted run leaves the old set whole.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

# P-256 keys in PKCS#8, which Go's crypto/tls (the product, the Temporal
# server, CLI and Web UI) reads.
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x$(openssl rand -hex 16)"; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -set_serial "$(serial)" \
	-subj "/O=tsbulk demo/CN=tsbulk demo CA" \
	-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "subjectKeyIdentifier=hash" \
	-out ca.pem

# sign NAME CN EXTENSIONS: NAME.key and NAME.pem signed by the CA.
sign() {
	key "$1.key"
	openssl req -new -key "$1.key" -subj "/O=tsbulk demo/CN=$2" -out "$1.csr"
	printf '%s\n' "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "$(serial)" \
		-days "$days" -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
	openssl verify -CAfile ca.pem "$1.pem" >/dev/null || die "openssl verify $1.pem failed"
}

common="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"

sign server temporal "$common
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:temporal,DNS:localhost,IP:127.0.0.1"

sign client tsbulk "$common
extendedKeyUsage=clientAuth"

chmod 0644 $files
mv -f $files "$dir/"
echo "generate.sh: wrote $files to $dir (valid $days days)" >&2
