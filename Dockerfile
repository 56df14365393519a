# credwrap in an image of its own, to copy into yours:
#
#   COPY --from=ghcr.io/credwrap/credwrap:VERSION /credwrap /usr/local/bin/credwrap
#
# FROM scratch: the static binary and a CA bundle (for images that have none), nothing else.
# Built from the context `scripts/release` writes (dist/image/); the binary is picked by the
# platform being built (TARGETARCH: amd64 or arm64; the classic builder leaves it unset).
FROM scratch
ARG TARGETARCH=amd64
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY credwrap-${TARGETARCH} /credwrap
ENTRYPOINT ["/credwrap"]
