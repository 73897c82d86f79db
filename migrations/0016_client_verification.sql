-- How a client verifies what the gateway signs: by the gateway's public key id
-- (PUB_KEY_ID_…, WeChat's 微信支付公钥 mode, every client so far) or by the serial of the
-- gateway's certificate from GET /v3/certificates (WeChat's 平台证书 mode). Either way the
-- same key signs; the mode only picks the name in Wechatpay-Serial.
ALTER TABLE clients
    ADD COLUMN verification text NOT NULL DEFAULT 'public_key'
        CHECK (verification IN ('public_key', 'certificate'));
