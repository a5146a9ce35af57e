# One image for every deployment pattern: all seven plugins, or any subset (FAAS_PLUGINS) in direct or remote mode.
# Without DATABASE_URL it runs the embedded PostgreSQL under /data (mount a volume there).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FAAS_DATA_DIR=/data

RUN useradd --create-home --uid 10001 faas && mkdir /data && chown faas /data
WORKDIR /srv/faas

COPY pyproject.toml README.md alembic.ini constraints.txt ./
COPY alembic ./alembic
COPY app ./app
COPY plugins ./plugins
# Every runtime dependency at the version constraints.txt pins (the one the tests passed on), so two builds of the
# same commit install the same packages. Editable install keeps alembic/ next to the code, where `faas migrate`
# finds it.
RUN pip install -c constraints.txt -e .

USER faas
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
CMD ["faas", "serve", "--host", "0.0.0.0", "--port", "8000"]
