# syntax=docker/dockerfile:1
# Build the wheels in one stage, run as an unprivileged user in the next.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY ledger ./ledger
COPY splitting ./splitting
COPY coupons ./coupons
COPY points ./points
COPY emulator ./emulator
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/mallpay --shell /usr/sbin/nologin mallpay
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER mallpay
WORKDIR /var/lib/mallpay
# Configuration is by environment: DATABASE_URL, MALLPAY_* (see README). A deployment sets
# at least DATABASE_URL, MALLPAY_PUBLIC_URL, MALLPAY_GATEWAY_PRIVATE_KEY_FILE and the
# MALLPAY_CHANNEL_* credentials of the mall's WeChat Pay merchant account.
ENV MALLPAY_HOST=0.0.0.0 \
    MALLPAY_PORT=8080 \
    MALLPAY_DATA_DIR=/var/lib/mallpay
EXPOSE 8080
CMD ["mallpay", "serve"]
