# The apiops-worker image: static binaries built by `make image` (CGO off), no base
# image, so nothing is pulled from a registry. CA roots are compiled into the binaries
# (golang.org/x/crypto/x509roots/fallback). Runs as a non-root user.
#
#   apiops-worker (default entrypoint), apiopsctl and apiops-sim are in /usr/local/bin;
#   the simulator's seed is /usr/share/apiops-worker/apiops-seed.json.
FROM scratch
COPY build/image/ /
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/apiops-worker"]
