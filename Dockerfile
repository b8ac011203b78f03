# mailsc container image: `docker build -t mailsc .`
#
# Two stages: the first builds a wheel of this checkout and installs it with its dependencies into a virtualenv;
# the second copies only that virtualenv onto a slim Python base and runs as an unprivileged user. The same image
# runs the API (`mailsc serve`, the default command) and the delivery worker (`mailsc worker`); see docs/deploy.md.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/mailsc \
 && /opt/mailsc/bin/pip install --upgrade pip \
 && /opt/mailsc/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/mailsc/bin/pip install /wheels/*.whl

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/mailsc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MAILSC_HOST=0.0.0.0 \
    MAILSC_PORT=8025 \
    MAILSC_DATABASE_URL=sqlite:////var/lib/mailsc/mailsc.db
RUN groupadd --system --gid 10001 mailsc \
 && useradd --system --uid 10001 --gid mailsc --home-dir /var/lib/mailsc --shell /usr/sbin/nologin mailsc \
 && install -d -o mailsc -g mailsc -m 0750 /var/lib/mailsc
COPY --from=build /opt/mailsc /opt/mailsc
USER 10001:10001
WORKDIR /var/lib/mailsc
VOLUME ["/var/lib/mailsc"]
EXPOSE 8025
# Liveness: the process answers HTTP. Readiness (database and SMTP transport usable) is GET /readyz: wire it to
# your orchestrator's readiness probe (docs/deploy.md); it is not a HEALTHCHECK because a broken SMTP setup must
# not make Docker restart a process that is correctly keeping the mail queued.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('MAILSC_PORT', '8025')}/healthz\", timeout=2)"]
ENTRYPOINT ["mailsc"]
# Listening on 0.0.0.0 needs an API key (MAILSC_API_KEY or MAILSC_API_KEY_FILE, or `mailsc keys create`).
CMD ["serve"]
