# DialoGPT toolkit on a CUDA runtime image.
#   docker build -t dialogpt .                       # runs the fast test suite as the build check
#   docker build --build-arg RUN_TESTS=0 -t dialogpt .
#   docker run --gpus all --ipc=host -v "$PWD/demo_output:/home/dialogpt/dialogpt/demo_output" dialogpt
#   docker run --gpus all --ipc=host -it dialogpt python interact.py --model demo_output/train/<run>
# The default command is the offline demo (python demo.py). See docs/demo.md.
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ARG EXTRAS=meteor,fast,tensorboard,test
ARG RUN_TESTS=1
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

# python 3.12, make (reddit extractor), java (METEOR 1.5), zstd/gzip (dumps)
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make default-jre-headless \
        zstd gzip ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && useradd --create-home --shell /bin/bash dialogpt

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; \
extras = [r for e in '${EXTRAS}'.split(',') for r in p['optional-dependencies'][e]]; \
print('\n'.join(p['dependencies'] + extras))" > /tmp/requirements.txt \
 && pip install --extra-index-url "${TORCH_INDEX}" -r /tmp/requirements.txt

# Then the source, installed without touching the dependencies again.
WORKDIR /home/dialogpt/dialogpt
COPY --chown=dialogpt:dialogpt . .
RUN pip install --no-deps -e ".[${EXTRAS}]"

USER dialogpt
# The build check: the fast tests (the golden vectors ship in tests/golden).
RUN if [ "${RUN_TESTS}" = "1" ]; then python -m pytest -q -m "not slow" -p no:cacheprovider; fi

CMD ["python", "demo.py"]
