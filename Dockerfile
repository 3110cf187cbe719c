# PatchCoreCL clinician app.
#   docker build -t patchcorecl .
#   docker run -p 8501:8501 -v patchcorecl-data:/data -e PATCHCORECL_USERS=/data/users.toml patchcorecl
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PATCHCORECL_STORE=/data/store PATCHCORECL_DB=sqlite:////data/audit.sqlite \
    PATCHCORECL_SPOOL=/data/spool PATCHCORECL_CACHE=/opt/patchcorecl-cache
RUN apt-get update && apt-get install -y --no-install-recommends curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY core core
COPY app app
COPY assets assets
COPY .streamlit .streamlit
# convert the offline backbone weights at build time, so the container starts ready
RUN python -c "from core.backbones import convert_packaged_weights, get_spec; convert_packaged_weights(get_spec('efficientnet_lite0'))"
RUN useradd --create-home --uid 1000 app && mkdir -p /data && chown app /data
USER app
VOLUME /data
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD curl -fsS http://localhost:8501/_stcore/health || exit 1
# XSRF protection stays on (Streamlit's default; set explicitly in .streamlit/config.toml)
CMD ["streamlit", "run", "app/main.py", "--server.address=0.0.0.0", "--server.port=8501"]
