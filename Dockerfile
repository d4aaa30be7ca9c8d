# docflow container image.
#
#   docker build -t docflow .
#   docker run -p 8000:8000 -v docflow-data:/var/lib/docflow docflow
#
# Packages come only from scripts/install-deps, the project's one list: the
# build stage installs its "build" set, the runtime stage its "runtime" set.

FROM debian:bookworm AS build
WORKDIR /src
# The package lists first, so this layer stays cached until they change. The
# build set runs `npm ci --omit=dev` (only Swagger UI's files, which are
# embedded in the binary; no test tools), so the npm lock file must be here
# too; .dockerignore keeps a local node_modules/ out of the `COPY . .` below.
COPY scripts/install-deps scripts/install-deps
COPY package.json package-lock.json ./
RUN scripts/install-deps build
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build build --target docflow

FROM debian:bookworm-slim
COPY scripts/install-deps /usr/local/lib/docflow/install-deps
RUN /usr/local/lib/docflow/install-deps runtime \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/src/docflow /usr/local/bin/docflow
RUN useradd --system --user-group --home-dir /var/lib/docflow --shell /usr/sbin/nologin docflow \
 && mkdir -p /var/lib/docflow \
 && chown docflow:docflow /var/lib/docflow
ENV DOCFLOW_LISTEN=0.0.0.0:8000 \
    DOCFLOW_DATA_DIR=/var/lib/docflow
WORKDIR /var/lib/docflow
VOLUME /var/lib/docflow
EXPOSE 8000
# After SIGTERM docflow drains requests for up to DOCFLOW_SHUTDOWN_TIMEOUT
# (30s), then lets running extractions finish (up to 60s): run with
# --stop-timeout 90 so Docker does not kill it first (docs/operations.md).
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
USER docflow
ENTRYPOINT ["docflow"]
CMD ["serve"]
