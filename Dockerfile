# The watchkeeper worker image (also runs any other `watchkeeper` command).
#   docker build -t watchkeeper .
#   docker run --rm watchkeeper --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/watchkeeper
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[server]' \
    && useradd --system --uid 10001 --home-dir /var/lib/watchkeeper --create-home watchkeeper

USER watchkeeper
WORKDIR /var/lib/watchkeeper
# Faust's state directory (tables, offsets); mount a volume here to keep it across restarts.
ENV WATCHKEEPER_DATA_DIR=/var/lib/watchkeeper/worker \
    WATCHKEEPER_METRICS_PORT=9464
EXPOSE 9464

ENTRYPOINT ["watchkeeper"]
CMD ["worker", "--config", "/etc/watchkeeper/watchkeeper.yaml"]
