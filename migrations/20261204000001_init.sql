-- The application role. Every tenant-scoped statement runs under it (SET LOCAL ROLE) with the
-- tenant chosen per transaction, so row-level security applies even when the engine connects as
-- a superuser. The role cannot log in and does not bypass row-level security.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'velochat_app') THEN
        CREATE ROLE velochat_app NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION
    -- Roles belong to the whole cluster, so two databases migrating at once can race here.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- The tenant of the current transaction, or NULL when none is set. A missing or empty setting
-- matches no row, so a query without a tenant sees nothing.
CREATE FUNCTION velochat_current_tenant() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('velochat.tenant_id', true), '')::uuid
$$;

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    timezone text NOT NULL DEFAULT 'Asia/Kolkata',
    -- NULL means the built-in English, Hindi and Marathi keyword lists.
    stop_keywords text[],
    start_keywords text[],
    opt_out_confirmation text,
    opt_in_confirmation text,
    holding_message text,
    automated_label text,
    -- The dealership facts that prompts and the offline responder draw on.
    profile jsonb NOT NULL DEFAULT '{}'::jsonb,
    prompt_template text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE whatsapp_numbers (
    phone_number_id text PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    display_phone text NOT NULL,
    access_token text NOT NULL,
    -- Meta's default throughput is 80 messages per second per number.
    messages_per_second integer NOT NULL DEFAULT 80 CHECK (messages_per_second BETWEEN 1 AND 1000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_numbers_tenant ON whatsapp_numbers (tenant_id);

CREATE TABLE contacts (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    wa_id text NOT NULL,
    profile_name text,
    opted_out boolean NOT NULL DEFAULT false,
    opted_out_at timestamptz,
    -- WhatsApp's own marketing stop/resume preference (user_preferences webhooks).
    marketing_opted_out boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, wa_id)
);

CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    contact_id uuid NOT NULL REFERENCES contacts (id),
    -- The business number the customer last wrote to; replies leave from it.
    phone_number_id text NOT NULL REFERENCES whatsapp_numbers (phone_number_id),
    mode text NOT NULL DEFAULT 'ai' CHECK (mode IN ('ai', 'human')),
    assigned_to uuid,
    -- The state machine's persisted fields.
    reply_generation bigint NOT NULL DEFAULT 0,
    reply_owed_for uuid,
    opt_changed_at bigint,
    latest_inbound_at bigint,
    last_message_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, contact_id)
);

CREATE TABLE messages (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    wamid text NOT NULL,
    message_type text NOT NULL,
    body text,
    context_wamid text,
    payload jsonb NOT NULL,
    -- Meta's timestamp, which orders a conversation; received_at is when it reached us.
    wa_timestamp timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, wamid)
);
CREATE INDEX messages_conversation ON messages (conversation_id, wa_timestamp);

-- Inbound work for the conversation actors. A row is processed exactly once: the actor marks it
-- in the same transaction as the effects it commits.
CREATE TABLE inbound_events (
    id bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    message_id uuid NOT NULL REFERENCES messages (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE INDEX inbound_events_unprocessed ON inbound_events (created_at) WHERE processed_at IS NULL;
CREATE INDEX inbound_events_conversation ON inbound_events (conversation_id) WHERE processed_at IS NULL;

-- Every outbound message, from the moment it is decided until its final status.
CREATE TABLE outbox (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    phone_number_id text NOT NULL REFERENCES whatsapp_numbers (phone_number_id),
    recipient text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('auto_reply', 'holding', 'opt_out_confirmation',
                                       'opt_in_confirmation', 'staff')),
    automated boolean NOT NULL,
    body text NOT NULL,
    -- Which customer message this answers, and which part of a split text it is. The pair is
    -- unique so that a replayed decision never queues the same reply twice.
    reply_to uuid,
    part smallint NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempt_started_at timestamptz,
    wamid text,
    error_code bigint,
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    status_at timestamptz,
    UNIQUE (conversation_id, kind, reply_to, part)
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status IN ('queued', 'sending');
CREATE UNIQUE INDEX outbox_wamid ON outbox (tenant_id, wamid) WHERE wamid IS NOT NULL;
CREATE INDEX outbox_conversation ON outbox (conversation_id, created_at);

-- Every status webhook item, kept once per (message, status) even when the id is unknown.
CREATE TABLE message_statuses (
    id bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    wamid text NOT NULL,
    status text NOT NULL,
    wa_timestamp timestamptz NOT NULL,
    recipient text,
    callback_data text,
    error_code bigint,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, wamid, status)
);

-- Row-level security: each tenant-scoped table shows only the current tenant's rows, to the
-- table owner as well (FORCE).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['whatsapp_numbers', 'contacts', 'conversations', 'messages',
                             'inbound_events', 'outbox', 'message_statuses']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = velochat_current_tenant())'
                       ' WITH CHECK (tenant_id = velochat_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO velochat_app', t);
    END LOOP;
END
$$;
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = velochat_current_tenant());
GRANT SELECT ON tenants TO velochat_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO velochat_app;
GRANT EXECUTE ON FUNCTION velochat_current_tenant() TO velochat_app;
-- The engine switches to the application role per transaction, so it must be a member.
DO $$
BEGIN
    EXECUTE format('GRANT velochat_app TO %I', current_user);
EXCEPTION
    WHEN unique_violation OR internal_error THEN NULL;
END
$$;
