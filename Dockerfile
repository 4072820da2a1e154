# One image for every service role: `recomb api`, `recomb worker`, `recomb migrate`.
# Layers go from the least to the most often changed, so a code change rebuilds only the last two.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 OMP_NUM_THREADS=1
WORKDIR /srv/recomb

# CPU-only PyTorch: the networks are tiny and the workers pin one thread each.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY constraints.txt ./
RUN pip install --no-deps --index-url "$TORCH_INDEX" -c constraints.txt torch

# Every other dependency (with the PostgreSQL and Redis clients), at the locked versions: rebuilt
# only when pyproject.toml or constraints.txt change.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["redis-postgres"]))' > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY README.md alembic.ini ./
COPY app ./app
COPY core ./core
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-deps .

RUN useradd --system --home /srv/recomb recomb && mkdir -p /var/lib/recomb && chown recomb /var/lib/recomb
USER recomb
ENV RECOMB_DATA_DIR=/var/lib/recomb
EXPOSE 8000
# The API's readiness (database and broker reachable); compose gives the worker a check of its own.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["recomb", "api", "--host", "0.0.0.0", "--port", "8000"]
