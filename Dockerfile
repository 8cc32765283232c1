# One image for every process: migrate, control, stage1..stage7, scheduler, api.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY ai ./ai
COPY consumers ./consumers
COPY producers ./producers
COPY scheduler ./scheduler
COPY automation ./automation
COPY bench ./bench
RUN pip install .
RUN useradd --create-home automation && mkdir -p /data/logs /data/media && chown -R automation /data
USER automation
ENV AUTOMATION_LOG_DIR=/data/logs AUTOMATION_MEDIA_DIR=/data/media
# 8000: the API; 9100: /metrics, /healthz and /readyz of consumers and the scheduler (AUTOMATION_METRICS_PORT)
EXPOSE 8000 9100
ENTRYPOINT ["automation"]
