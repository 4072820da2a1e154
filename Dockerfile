# One image for every service role: `recomb api`, `recomb worker`, `recomb migrate`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 OMP_NUM_THREADS=1
WORKDIR /srv/recomb

# CPU-only PyTorch: the networks are tiny and the workers pin one thread each.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY app ./app
COPY core ./core
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-cache-dir .

RUN useradd --system --home /srv/recomb recomb && mkdir -p /var/lib/recomb && chown recomb /var/lib/recomb
USER recomb
ENV RECOMB_DATA_DIR=/var/lib/recomb
EXPOSE 8000
CMD ["recomb", "api", "--host", "0.0.0.0", "--port", "8000"]
