# vistudio: the server, the workers and the CLI in one image (docs/deploying.md).
#   docker build -t vistudio .                                    # CUDA-enabled PyTorch (default wheels)
#   docker build -t vistudio --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
FROM python:3.11-slim-bookworm

# PyTorch wheels from another index (the CPU-only ones are ~10x smaller); empty: PyPI's, which use
# CUDA when the container is given a GPU and run on the CPU otherwise.
ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VISTUDIO_HOME=/data

# postgresql-client: pg_dump/pg_restore for `vistudio backup` on PostgreSQL (15, as the compose
# file's server: pg_dump refuses servers newer than itself); curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 vistudio \
    && mkdir /data && chown vistudio /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install torch torchvision --index-url "$TORCH_INDEX_URL"; fi \
    && pip install ".[postgres,s3]"

USER vistudio
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["vistudio"]
# binding 0.0.0.0 needs VISTUDIO_API_TOKEN (or users, docs/deploying.md); embedded workers off when
# separate worker containers take the jobs
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
