# syntax=docker/dockerfile:1
#
# The credbroker image: a static Go binary on distroless/static (CA certificates, tzdata and a
# nonroot user, nothing else: no shell, no package manager), running as UID/GID 65532.
#
#   docker build --build-arg STAMP="$(make -s stamp)" -t ghcr.io/credbroker/credbroker:0.1.0 .
#   docker buildx build --build-arg STAMP="$(make -s stamp)" --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/credbroker/credbroker:0.1.0 .
#
# STAMP carries the version, commit and commit time (`credbroker version`): .git is not in the
# build context, so Go cannot stamp them itself. Without it the binary says "(devel)".
# `make image` builds the same image without Docker (see the README).
#
# The Helm chart (charts/credbroker) runs it with `run --config /etc/credbroker/config/config.yaml`
# and a read-only root file system.

ARG GO_VERSION=1.26

# Build stage: compiles for the target platform on the build platform (no emulation).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG STAMP=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w ${STAMP}" -o /out/credbroker ./cmd/credbroker

# Runtime stage: only the binary.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="credbroker" \
      org.opencontainers.image.description="Credential broker sidecar: service bindings in, working credentials out" \
      org.opencontainers.image.source="https://github.com/credbroker/credbroker"
COPY --from=build /out/credbroker /usr/local/bin/credbroker
USER 65532:65532
# 8411: egress proxy and token API (127.0.0.1 only); 9411: /healthz /readyz /metrics.
EXPOSE 9411
ENTRYPOINT ["/usr/local/bin/credbroker"]
CMD ["run"]
