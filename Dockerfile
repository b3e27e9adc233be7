# One image for every process of the node: daphne (the default command), the Celery worker and Celery
# beat (compose.yaml gives them their commands). It is built with the host's own steps: the Python
# packages by scripts/install.sh and the browser bundles by scripts/assets.sh, which `make install`
# and `make assets` run too, so CI exercises both (tests/deploy/test_images.py checks they are the same).

# --- The browser bundles: the dashboard's charts, the card, the demo dapp ------------------------------
FROM node:20-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/install.sh scripts/assets.sh scripts/
RUN scripts/install.sh js
COPY dashboard/assets dashboard/assets
COPY card/assets card/assets
COPY card/js card/js
RUN scripts/assets.sh

# --- The Python packages: requirements.txt (pinned, wheels only) and ./connext, in /app/.venv ---------
FROM python:3.11-slim-bookworm AS packages
WORKDIR /app
COPY scripts/install.sh scripts/
COPY requirements.txt ./
COPY connext connext
RUN VENV=/app/.venv scripts/install.sh runtime

# --- The image: the checkout (with the committed contract artifacts), the packages, the bundles -------
FROM python:3.11-slim-bookworm
# pg_dump and pg_restore for `manage.py backup` and `restore`: Debian's 15, the major version of the
# compose stack's Postgres (a pg_dump cannot dump a newer server).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15='15.*' \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid, so that secret files and volumes can be given to it on the host (README: Deployment).
RUN groupadd --system --gid 10001 connext \
    && useradd --system --uid 10001 --gid connext --no-create-home --home-dir /var/lib/connext \
        --shell /usr/sbin/nologin connext \
    && install -d -o connext -g connext /var/lib/connext /srv/static /backups
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_DEBUG=false \
    NODE_VAR_DIR=/var/lib/connext \
    STATIC_ROOT=/srv/static
WORKDIR /app
COPY --from=packages /app/.venv .venv
# The code belongs to root: the node's processes can read it, not change it.
COPY . .
COPY --from=assets /src/dashboard/static/dashboard/build dashboard/static/dashboard/build
COPY --from=assets /src/card/static/card/build card/static/card/build
RUN python -m compileall -q connext connext_site channels_app dashboard card
USER 10001:10001
# Into /srv/static, owned by the node's user: a new volume mounted there starts with these files, and
# compose's migrate service collects them again into it on every deployment (the proxy serves them).
RUN DJANGO_DEBUG=true python manage.py collectstatic --noinput -v 0
EXPOSE 8000
# /api/health is 200 only when the database, Redis, the chain, the contracts and the workers answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"]
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "connext_site.asgi:application"]
