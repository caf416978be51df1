# The image of the gateway and worker services (compose.yaml builds it).
FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml ./
COPY redpromise ./redpromise
RUN pip install '.[aiohttp]'
COPY services ./services
USER nobody
CMD ["python", "-m", "redpromise", "worker", "services.worker:rp"]
