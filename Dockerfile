# The worker and the HTTP API, one image: `followups worker` (the default) or `followups api`.
# No `embedded` extra: in a container Followups talks to real servers (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY settings.py worker.py observability.py ./
COPY workflows/ workflows/
COPY activities/ activities/
COPY starter/ starter/
COPY templates/ templates/
COPY migrations/ migrations/

# Editable on purpose: activities/render.py and activities/store.py find templates/ and
# migrations/ beside the packages (Path(__file__).parent.parent), so the code runs from /app,
# where they are, and not from a copy in site-packages, where they are not.
RUN pip install --no-deps -e . \
    && python -m compileall -q workflows activities starter worker.py settings.py observability.py \
    && groupadd --system --gid 10001 followups \
    && useradd --system --uid 10001 --gid followups --home-dir /app --shell /usr/sbin/nologin followups

# Numeric, so that a runtime that checks for a non-root user without reading the image's
# /etc/passwd (Kubernetes' runAsNonRoot) can tell that it is not root.
USER 10001:10001

EXPOSE 8000
ENTRYPOINT ["followups"]
CMD ["worker"]
