#!/usr/bin/env bash
# Regenerates the test keystores in this directory with keytool.
#
# Run once by hand when the fixtures need replacing; CI does NOT run this.
# The output is not reproducible (new keys, new dates), so after running it the
# base64 embedded in testdata/commands/keystore.*.json and testdata/rotation.jsonl
# must be refreshed too.
#
# Password for every store and key: changeit (test fixtures only, never real secrets).
set -euo pipefail

cd "$(dirname "$0")"

PASS=changeit
DNAME="CN=apiops-worker-test"
DAYS=3650
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

rm -f client-2026.jks client-2026.p12 trust-2027.jks trust-2027.p12

# client-2026: one self-signed EC (secp256r1) key pair + certificate, alias "client".
keytool -genkeypair -noprompt \
  -alias client -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
  -dname "$DNAME" -validity "$DAYS" \
  -storetype PKCS12 -keystore client-2026.p12 -storepass "$PASS" -keypass "$PASS"

# Same key pair in JKS form.
keytool -importkeystore -noprompt \
  -srckeystore client-2026.p12 -srcstoretype PKCS12 -srcstorepass "$PASS" -srcalias client \
  -destkeystore client-2026.jks -deststoretype JKS -deststorepass "$PASS" -destkeypass "$PASS" \
  -destalias client 2>/dev/null

# trust-2027: only a certificate (a separate self-signed EC "CA"), alias "ca".
keytool -genkeypair -noprompt \
  -alias ca -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
  -dname "$DNAME" -validity "$DAYS" -ext bc:c \
  -storetype PKCS12 -keystore "$TMP/ca.p12" -storepass "$PASS" -keypass "$PASS"
keytool -exportcert -rfc -alias ca \
  -keystore "$TMP/ca.p12" -storetype PKCS12 -storepass "$PASS" -file "$TMP/ca.pem"

for type in JKS PKCS12; do
  case "$type" in JKS) out=trust-2027.jks ;; PKCS12) out=trust-2027.p12 ;; esac
  keytool -importcert -noprompt -alias ca -file "$TMP/ca.pem" \
    -storetype "$type" -keystore "$out" -storepass "$PASS" 2>/dev/null
done

for f in client-2026.jks client-2026.p12 trust-2027.jks trust-2027.p12; do
  printf '%-16s %5d bytes, base64 %5d chars\n' "$f" "$(wc -c <"$f")" "$(base64 -w0 "$f" | wc -c)"
done
