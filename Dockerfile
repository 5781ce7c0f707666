# The gateway and its simulators, for the docker-compose lab kit.
#   docker build -t shopfloor-gateway:0.1.0 .
#   docker run --rm shopfloor-gateway:0.1.0 gateway --help
#
# Two stages: the first builds the wheel (as `python -m build` does on a developer's machine,
# with the example configs and the web page inside it); the second installs only that wheel, so
# the image runs exactly what pip users get, without the source tree or the build tools.

FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN pip install "build>=1.2"
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY gateway ./gateway
COPY connectors ./connectors
COPY configs ./configs
RUN python -m build --wheel --outdir /wheels .

FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
# The configs compose mounts or names (/app/configs/lab-compose.yaml); the same files are in the package.
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
