# shellcheck shell=bash
# A throw-away certificate authority and a certificate it signs, for the
# container tests' HTTPS checks (tests/systemd-boot.sh,
# tests/deb-install.sh), made on the build machine with openssl.
#
# mint_cert DIR NAME: writes DIR/ca.pem (the authority, for curl --cacert),
# DIR/fullchain.pem (the certificate for NAME, then nothing: the authority
# signs it directly) and DIR/privkey.pem (its ECDSA P-256 key, PKCS#8), all
# valid for 30 days, so that no expiry warning is near.
mint_cert() {
    local dir=$1 name=$2
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=forkhttpd test CA" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
            -keyout "$dir/privkey.pem" -out "$dir/leaf.csr" 2>/dev/null &&
        openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
            -days 30 -out "$dir/fullchain.pem" -extfile <(printf '%s\n' "subjectAltName=DNS:$name" \
                basicConstraints=critical,CA:FALSE extendedKeyUsage=serverAuth) 2>/dev/null
}

# The helpers below run in the container of tests/lib/nspawn.sh (ct, $run).
# The test certificate's name; the container resolves it only for curl
# (--resolve).
site=example.org

# cert_in_container: mints the certificate for $site in $run/tls and puts
# it where certbot puts one (/etc/letsencrypt/live/$site/, the key 0600),
# which the install guide's HTTPS steps copy from, and the authority in
# /root/test-ca.pem for curl --cacert.
cert_in_container() {
    mint_cert "$run/tls" "$site" || { echo "openssl could not make the test certificate"; return 1; }
    ct mkdir -p "/etc/letsencrypt/live/$site"
    ct sh -c "cat > /etc/letsencrypt/live/$site/fullchain.pem" <"$run/tls/fullchain.pem"
    ct sh -c "umask 077 && cat > /etc/letsencrypt/live/$site/privkey.pem" <"$run/tls/privkey.pem"
    ct sh -c "cat > /root/test-ca.pem" <"$run/tls/ca.pem"
}

# fetch_tls ADDRESS [PATH]: status and content type over HTTPS on port 443
# inside the container, the test authority trusted, $site resolved to
# ADDRESS (127.0.0.1, [::1]).
fetch_tls() {
    ct curl -sS --max-time 5 --cacert /root/test-ca.pem --resolve "$site:443:$1" -o /dev/null \
        -w '%{http_code} %{content_type}\n' "https://$site/${2:-}"
}
# expect_tls WANT ADDRESS [PATH]: the fetch gives exactly WANT.
expect_tls() {
    local want=$1 got
    shift
    got=$(fetch_tls "$@") || return 1
    echo "got: $got, want: $want"
    [ "$got" = "$want" ]
}
