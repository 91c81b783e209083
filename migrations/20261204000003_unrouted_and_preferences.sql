-- Webhook changes for phone numbers no tenant has registered yet. They are kept rather than
-- dropped, because Meta does not deliver an acknowledged webhook again.
CREATE TABLE unrouted_webhooks (
    id bigserial PRIMARY KEY,
    phone_number_id text,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Meta timestamp (unix seconds) of the marketing preference last applied, so that an older
-- stop or resume delivered late does not override a newer one.
ALTER TABLE contacts ADD COLUMN marketing_preference_at bigint;
