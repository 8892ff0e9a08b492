#!/usr/bin/env bash
# Makes a private CA, the coordinator's server certificate and a client certificate for
# workers (mutual TLS), with openssl, into DIR:
#   ca.crt ca.key            the CA (keep ca.key off the cluster)
#   server.crt server.key    the coordinator's (serve --tls-cert / --tls-key)
#   client.crt client.key    the workers' (worker --tls-cert / --tls-key), for serve --tls-client-ca ca.crt
#
# Usage: deploy/make-certs.sh DIR [NAME...]
#   NAMEs: the DNS names or IP addresses clients reach the coordinator by, all written into
#   the server certificate (default: asdsweep-coordinator, the Kubernetes Service, with its
#   namespace-qualified forms for the namespace $NAMESPACE, default "default", and localhost
#   and 127.0.0.1). An existing CA in DIR is reused, so more certificates can be added later.
# Environment: DAYS (validity of the leaf certificates, default 825), NAMESPACE.
#
# A real deployment may prefer its own CA or cert-manager; any PEM certificate and key work.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: deploy/make-certs.sh DIR [NAME...]" >&2; exit 1; }
command -v openssl >/dev/null || { echo "make-certs.sh: needs openssl" >&2; exit 1; }
dir="$1"
shift
ns="${NAMESPACE:-default}"
if [ $# -eq 0 ]; then
  set -- asdsweep-coordinator "asdsweep-coordinator.$ns" "asdsweep-coordinator.$ns.svc" \
    "asdsweep-coordinator.$ns.svc.cluster.local" localhost 127.0.0.1
fi
days="${DAYS:-825}"
mkdir -p "$dir"
cd "$dir"
umask 077

san=""
for name in "$@"; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
    san+="${san:+,}IP:$name"
  else
    san+="${san:+,}DNS:$name"
  fi
done

if [ ! -f ca.key ]; then
  # `req -x509` marks it a CA (basicConstraints CA:TRUE), as rustls requires of an issuer.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=asdsweep CA" -keyout ca.key -out ca.crt 2>/dev/null
fi

leaf() { # name common-name extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf server "$1" "subjectAltName=$san
extendedKeyUsage=serverAuth
basicConstraints=critical,CA:FALSE"
leaf client asdsweep-worker "extendedKeyUsage=clientAuth
basicConstraints=critical,CA:FALSE"
chmod 644 ca.crt server.crt client.crt
echo "make-certs.sh: in $(pwd): ca.crt, server.crt/.key ($san), client.crt/.key" >&2
