# CI only (scripts/docker-base-images.sh): a stand-in for the official python:3.11-slim-bookworm
# on machines that cannot reach Docker Hub. Debian bookworm's own Python 3.11, where the
# official image keeps its interpreter (/usr/local/bin/python3), with venv/ensurepip.
# The host's CA bundle (the build context's host-ca-bundle.crt) lets pip reach the package
# registry where TLS is inspected; it is never part of the images the project ships.
FROM debian:bookworm-slim
RUN set -eu; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3 python3-venv ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    for name in python python3 python3.11; do ln -s /usr/bin/python3.11 /usr/local/bin/$name; done
COPY host-ca-bundle.crt /etc/ssl/certs/agi-bridge-ci-host-bundle.crt
ENV LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/agi-bridge-ci-host-bundle.crt \
    SSL_CERT_FILE=/etc/ssl/certs/agi-bridge-ci-host-bundle.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/agi-bridge-ci-host-bundle.crt
CMD ["python3"]
