# CPU image of the prediction service. Build stage: the README's commands
# (scripts/setup.sh, cargo build --release --locked) against the CPU-only
# torch wheel; runtime: the binary and the libraries it links (libtorch,
# LightGBM's from its wheel, Debian's SQLite).
#
#   docker build -t ctr-dl .
#   docker run -p 8000:8000 -v $PWD/models:/models -v $PWD/logs:/logs ctr-dl
#
# PORT (default 8000) and PREDLOG (default /logs/predictions.sqlite; a
# postgres:// URL or "off") are read at start.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN bash scripts/setup.sh && cargo build --release --locked --features lightgbm --bin ctr-dl \
 && mkdir -p /out/lib && cp target/release/ctr-dl /out/ \
 && cp -L .venv/libtorch/lib/*.so* .venv/lightgbm/lib/lib_lightgbm.so /out/lib/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 libsqlite3-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ctr-dl /usr/local/bin/ctr-dl
COPY --from=build /out/lib/ /opt/libtorch/lib/
ENV LD_LIBRARY_PATH=/opt/libtorch/lib PORT=8000 PREDLOG=/logs/predictions.sqlite HISTORY_DIR=/history
EXPOSE 8000
VOLUME ["/models", "/logs", "/history"]
CMD ["sh", "-c", "exec ctr-dl serve --models /models --address 0.0.0.0 --port \"$PORT\" --predlog \"$PREDLOG\" --history-dir \"$HISTORY_DIR\""]
