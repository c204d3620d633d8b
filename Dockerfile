# lms: `docker run IMAGE mon|api|pub N|sim|migrate`; configured by environment variables (README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY lms ./lms
# A regular install: the migrations ship inside the package (lms/store/sql/).
RUN pip install . && useradd --system --uid 10001 lms
USER lms

# The metrics/health server and `lms api` must be reachable from outside the container. On a
# non-loopback address `lms api` refuses to start without INGEST_TOKENS (or API_INGEST=false).
ENV METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9464 \
    API_HOST=0.0.0.0
EXPOSE 9464 3000

ENTRYPOINT ["lms"]
CMD ["--help"]
