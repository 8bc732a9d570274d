# Multi-stage build of the confab gateway image.
# Stage 1 builds the binary, stage 2 fetches socket.io-client for the UI from npm,
# stage 3 is a small runtime with the binary, the UI and that one dist folder.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release -p confab && strip target/release/confab

FROM node:20-bookworm-slim AS ui
WORKDIR /src
COPY package.json package-lock.json ./
RUN PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --omit=dev --no-audit --no-fund

FROM debian:bookworm-slim
# CA roots for rediss:// (a managed Redis with a public certificate). For a private
# CA, mount its PEM file and set SSL_CERT_FILE to it (read by rustls-native-certs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home confab
WORKDIR /srv/confab
COPY --from=build /src/target/release/confab /usr/local/bin/confab
COPY ui ./ui
COPY --from=ui /src/node_modules/socket.io-client/dist ./vendor/socket.io
ENV CONFAB_BIND=0.0.0.0:3000 \
    CONFAB_UI_DIR=/srv/confab/ui \
    CONFAB_VENDOR_DIR=/srv/confab/vendor/socket.io \
    RUST_LOG=info
USER confab
EXPOSE 3000
STOPSIGNAL SIGTERM
ENTRYPOINT ["confab", "serve"]
