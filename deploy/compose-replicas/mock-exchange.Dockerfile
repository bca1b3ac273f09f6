# keyward's practice exchange (tests/src/bin/mock-exchange.rs) as an image, for
# compose.yaml beside this file. It is a test double that accepts one made-up API key;
# never point a real bot or a real key at it.
#
#   docker build -f deploy/compose-replicas/mock-exchange.Dockerfile -t keyward-mock-exchange .
#
# Built like deploy/Dockerfile, from the repository root: pin the build image by
# digest the same way. The cache mounts are the same too, so the dependencies it
# shares with keyward are compiled once.
FROM docker.io/library/rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p keyward-tests --bin mock-exchange \
 && mkdir -p /out \
 && cp target/release/mock-exchange /out/mock-exchange

# It keeps its CA and certificates under $TMPDIR (default /tmp), which the image does
# not have: mount a tmpfs there (compose.yaml does).
FROM scratch
COPY --from=build /out/mock-exchange /mock-exchange
# Neither root nor keyward's 65532.
USER 65533:65533
ENTRYPOINT ["/mock-exchange"]
