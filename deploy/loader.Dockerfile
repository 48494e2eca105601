# eventkit-loader: build from the repository root with
#   docker build -f deploy/loader.Dockerfile -t eventkit-loader .
# Multi-stage: uv installs the locked dependencies (--frozen: uv.lock as committed, no dev group)
# into /app/venv in the build stage; the runtime stage copies only that venv and runs as a
# non-root user. tests/e2e/test_e2e_containers.py runs the RUN uv sync and CMD lines below in a
# fresh venv and checks /health, so this recipe cannot rot silently.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/venv
COPY pyproject.toml uv.lock ./
COPY packages packages
COPY apps apps
RUN uv sync --frozen --no-dev --no-editable --package eventkit-loader

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --create-home eventkit
COPY --from=build /app/venv /app/venv
USER eventkit
WORKDIR /data
ENV PATH=/app/venv/bin:$PATH EVENTKIT_DATA_DIR=/data EVENTKIT_METRICS_HOST=0.0.0.0
VOLUME /data
EXPOSE 9091
CMD ["eventkit-loader", "run"]
