# Switchboard image: fanout, notifier and routectl in one slim runtime image.
#   docker build -t switchboard:dev .
#   docker run --rm switchboard:dev notifier --help
# Stage 1 builds release binaries with the Swift runtime linked statically; stage 2 carries
# only them, the stream definitions and the C libraries they link (checked with ldd below).
ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config libnats-dev libhiredis-dev libprotobuf-c-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change does not re-resolve packages.
COPY Package.swift Package.resolved* ./
RUN swift package resolve
COPY . .
RUN for product in fanout notifier routectl; do \
      swift build -c release --static-swift-stdlib --product "$product" || exit 1; \
    done \
 && mkdir -p /out \
 && for product in fanout notifier routectl; do cp "$(swift build -c release --show-bin-path)/$product" /out/; done \
 && strip /out/*

FROM debian:bookworm-slim
# Runtime libraries of nats.c, hiredis, protobuf-c and OpenSSL; libstdc++ for the Swift runtime.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libnats3.4 libhiredis0.14 libprotobuf-c1 libssl3 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin switchboard
COPY --from=build /out/ /usr/local/bin/
COPY streams /app/streams
# Fail the build if a binary needs a library this image does not have.
RUN for b in fanout notifier routectl; do \
      if ldd "/usr/local/bin/$b" | grep "not found"; then echo "$b: missing shared libraries" >&2; exit 1; fi; \
    done
WORKDIR /app
USER 10001
EXPOSE 8080 9090
CMD ["notifier", "--help"]
