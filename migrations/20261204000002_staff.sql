-- Staff accounts, tokens, the audit trail and the live event feed of the staff API.

CREATE TABLE staff_users (
    id uuid PRIMARY KEY,
    -- NULL only for platform administrators, who see aggregate figures and no tenant's data.
    tenant_id uuid REFERENCES tenants (id),
    email text NOT NULL,
    phone text,
    name text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'manager', 'agent', 'platform_admin')),
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz,
    CHECK ((role = 'platform_admin') = (tenant_id IS NULL))
);
CREATE UNIQUE INDEX staff_users_email ON staff_users (lower(email));

-- Refresh tokens are stored as SHA-256 hashes. Each login starts a family; a token used twice
-- revokes its whole family.
CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES staff_users (id),
    family_id uuid NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Every staff API request, failed ones included. Rows are never updated or deleted.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id),
    user_id uuid,
    method text NOT NULL,
    path text NOT NULL,
    status integer NOT NULL,
    request_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Changes staff watch live: new messages, status changes, mode and assignment changes. Kept for
-- a while so that a reconnecting client can resume from its last event id.
CREATE TABLE staff_events (
    id bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    kind text NOT NULL,
    conversation_id uuid,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_events_tenant ON staff_events (tenant_id, id);

-- Approved message templates, the only messages allowed outside the 24-hour window.
CREATE TABLE message_templates (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    name text NOT NULL,
    language text NOT NULL,
    status text NOT NULL DEFAULT 'approved' CHECK (status IN ('approved', 'pending', 'rejected')),
    PRIMARY KEY (tenant_id, name, language)
);

ALTER TABLE conversations
    ADD COLUMN staff_activity_at timestamptz,
    ADD COLUMN staff_read_at timestamptz,
    -- Meta timestamp of the newest customer message, which opens the 24-hour service window.
    ADD COLUMN last_customer_message_at timestamptz;

ALTER TABLE outbox
    ADD COLUMN message_type text NOT NULL DEFAULT 'text' CHECK (message_type IN ('text', 'template')),
    ADD COLUMN template jsonb,
    ADD COLUMN sent_by uuid;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['staff_users', 'audit_log', 'staff_events', 'message_templates']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = velochat_current_tenant())'
                       ' WITH CHECK (tenant_id = velochat_current_tenant())', t);
    END LOOP;
END
$$;
GRANT SELECT ON staff_users, message_templates TO velochat_app;
GRANT SELECT, INSERT ON audit_log, staff_events TO velochat_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO velochat_app;
