# The watchkeeper worker image (also runs any other `watchkeeper` command).
#   docker build -t watchkeeper .
#   docker run --rm watchkeeper --help

# The native event reader (native/, Rust) as a wheel.
FROM rust:1.83-slim-bookworm AS native
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && python3 -m venv /opt/maturin && /opt/maturin/bin/pip install 'maturin>=1.7,<2'
COPY native /src/native
RUN /opt/maturin/bin/maturin build --release --manifest-path /src/native/Cargo.toml --out /wheels

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/watchkeeper
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=native /wheels /wheels
RUN pip install /wheels/*.whl '.[server]' \
    && useradd --system --uid 10001 --home-dir /var/lib/watchkeeper --create-home watchkeeper

USER watchkeeper
WORKDIR /var/lib/watchkeeper
# Faust's state directory (tables, offsets); mount a volume here to keep it across restarts.
ENV WATCHKEEPER_DATA_DIR=/var/lib/watchkeeper/worker \
    WATCHKEEPER_METRICS_PORT=9464
EXPOSE 9464

ENTRYPOINT ["watchkeeper"]
CMD ["worker", "--config", "/etc/watchkeeper/watchkeeper.yaml"]
