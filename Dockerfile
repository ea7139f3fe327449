# The batched-fn model server, as a user installs it: the workspaces are built and packed (`npm pack`) in a first
# stage, installed from those tarballs with production dependencies only in a second, and the last stage holds that
# install, a non-root user and nothing else. docs/deployment.md has the whole story:
#
#   docker build -t batched-fn .
#   docker run --rm -p 8000:8000 -p 8001:8001 batched-fn                      # the generated default model
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" batched-fn --model-repository /models
#
# BASE is any Debian-based Node 22 image with npm. Where no container registry can be reached, build one from
# Debian's archive and npm's registry, and let the build use the machine's network:
#
#   docker build --network host --build-arg BASE="$(bash scripts/docker-base.sh)" -t batched-fn .
ARG BASE=node:22-slim

# Every package.json and the lockfile, and nothing else: the dependency layer below is rebuilt only when they change,
# and a workspace added to the root package.json needs no line here.
FROM ${BASE} AS manifests
# The build stages carry this label, so the caches of old builds can be found and removed:
#   docker image prune --force --filter label=org.batched-fn.stage
LABEL org.batched-fn.stage=manifests
COPY . /src
RUN find /src -type f ! -name package.json ! -name package-lock.json -delete

# 1. Build the packages and pack them as `npm publish` would.
FROM ${BASE} AS pack
LABEL org.batched-fn.stage=pack
# onnxruntime-node's install script would download CUDA libraries; its CPU build ships in the package.
ENV ONNXRUNTIME_NODE_INSTALL=skip npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
WORKDIR /src
COPY --from=manifests /src ./
# --ignore-scripts: the root's `prepare` (tsc -b) needs the sources, which are not here yet.
RUN npm ci --ignore-scripts
COPY . .
RUN mkdir /packs \
  && npx tsc -b \
  && npm pack --pack-destination /packs \
    --workspace batched-fn --workspace @batched-fn/server --workspace @batched-fn/redis

# 2. Install the tarballs into an empty project: what `npm install` gives a user. @batched-fn/redis (with its ioredis
# peer) is in, so the image can also be a Redis frontend (`--redis`) or a remote worker; OpenTelemetry's optional
# packages are not (see docs/deployment.md to add them).
FROM ${BASE} AS install
LABEL org.batched-fn.stage=install
ENV ONNXRUNTIME_NODE_INSTALL=skip npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
WORKDIR /opt/batched-fn
COPY --from=pack /packs /tmp/packs
RUN printf '{ "name": "batched-fn-image", "private": true, "type": "module" }\n' >package.json \
  && npm install --omit=dev /tmp/packs/*.tgz \
  && rm -rf /tmp/packs
# onnxruntime-node ships its native library for every platform (about 290 MB); keep this one's (45 MB on linux/x64),
# then load it once so a broken binding fails the build rather than the first start.
RUN keep="$(node -p 'process.platform + "/" + process.arch')" \
  && for dir in node_modules/onnxruntime-node/bin/napi-v*/*/*/; do \
       case "$dir" in */"$keep"/) ;; *) rm -rf "$dir" ;; esac; \
     done \
  && find node_modules/onnxruntime-node/bin -type d -empty -delete \
  && node -e "import('onnxruntime-node').then((ort) => console.log('onnxruntime-node', ort.env.versions.common))"

# 3. The image: the install above, owned by root and read-only to the server's user.
FROM ${BASE}
# A fixed numeric user, so Kubernetes' runAsNonRoot can check it. The default model is generated into its home
# (~/.cache/batched-fn, 72 MB) at the first start; a model repository needs no writable folder.
RUN groupadd --gid 10001 batched-fn \
  && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/batched-fn \
    --shell /usr/sbin/nologin batched-fn
COPY --from=install /opt/batched-fn /opt/batched-fn
COPY LICENSE /opt/batched-fn/LICENSE
COPY scripts/container-healthcheck.mjs /opt/batched-fn/healthcheck.mjs
ENV PATH=/opt/batched-fn/node_modules/.bin:$PATH
USER 10001:10001
WORKDIR /home/batched-fn
EXPOSE 8000 8001
# The server drains on SIGTERM (answers what it accepted, then exits 0); give `docker stop -t` the time that takes.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["node", "/opt/batched-fn/healthcheck.mjs"]
# All interfaces inside the container (the CLI's default is loopback). Arguments given to `docker run` come after,
# and a flag given twice takes its last value, so `--host 127.0.0.1` there still wins.
ENTRYPOINT ["batched-fn", "serve", "--host", "0.0.0.0"]
