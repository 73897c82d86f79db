"""What a payment does not ask the database for again: the client's APIv3 key per
notification (kept for MALLPAY_CLIENT_KEY_CACHE_S)."""

from __future__ import annotations

from gateway.repo import clients as clients_repo
from tests.support import open_notification, order_body, wait_until


async def test_notifications_to_one_client_read_its_apiv3_key_once(mall, monkeypatch):
    lookups = []
    real = clients_repo.notification_keys

    async def counting(conn, client_id):
        lookups.append(client_id)
        return await real(conn, client_id)

    monkeypatch.setattr(clients_repo, "notification_keys", counting)
    store = mall.stores[0]
    for n in range(3):
        reply = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(mall, store, f"KEYS-000{n}", 100 + n))
        assert reply.status == 200, reply.json
        await mall.shopper_pays(store, f"KEYS-000{n}")
        await wait_until(lambda: len(mall.sink.received) == n + 1, what="the notification")
    for headers, body in mall.sink.received:   # each still encrypted under the client's key
        assert open_notification(headers, body, mall.gateway_public_key, mall.app.creds.apiv3_key)
    assert lookups == [mall.app.creds.mchid]
