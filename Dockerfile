# The gateway and its simulators, for the docker-compose lab kit.
#   docker build -t shopfloor-gateway:0.1.0 .
#   docker run --rm shopfloor-gateway:0.1.0 gateway --help
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first (cached while only the code changes), then the code.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY connectors ./connectors
RUN pip install .
COPY configs ./configs

# Never run as root; /data holds the historian, the buffers and the OPC UA certificates.
RUN useradd --system --uid 10001 --home-dir /data --create-home gateway
USER gateway
VOLUME ["/data"]

# 8080: web page, API and /metrics; 4840-4841: the OPC UA simulator's machines.
EXPOSE 8080 4840 4841
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
CMD ["gateway", "run", "/app/configs/lab-compose.yaml"]
