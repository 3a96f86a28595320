# One image for every Phoenix process (api, worker, beat, event consumer, bootstrap job).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PHOENIX_DATA_DIR=/var/lib/phoenix

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
ENV DJANGO_STATIC_ROOT=/app/staticfiles
RUN python manage.py collectstatic --noinput --verbosity 0
RUN useradd --system --uid 1000 --home-dir /app phoenix \
    && mkdir -p /var/lib/phoenix \
    && chown -R phoenix /var/lib/phoenix
USER phoenix

EXPOSE 8000
CMD ["python", "-m", "phoenix.web_server", "phoenix.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-access-log", "--lifespan", "on"]
