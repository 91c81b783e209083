//! The staff API: tokens, conversations, takeover, staff replies, live events, audit and the
//! OpenAPI description.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;
use velochat::auth::Role;
use velochat::user_cli::{create_user, NewUser};

use crate::support::{create_tenant, ts, Options, TestEnv};

const PASSWORD: &str = "correct horse battery";

/// A staff member with a live session.
#[derive(Clone)]
struct Session {
    user_id: Uuid,
    access: String,
    refresh: String,
}

/// Accounts of two dealerships and a platform administrator.
struct World {
    owner: Session,
    manager: Session,
    agent: Session,
    other_agent: Session,
    owner_b: Session,
    admin: Session,
    tenant_b_number: String,
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(env: &TestEnv) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: env.engine_url(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await
    }
}

async fn account(
    env: &TestEnv,
    api: &Api,
    tenant_id: Option<Uuid>,
    email: &str,
    role: Role,
) -> Session {
    let new = NewUser {
        tenant_id,
        email: email.to_string(),
        phone: Some("+919800000000".to_string()),
        name: email.split('@').next().unwrap().to_string(),
        role,
        password: PASSWORD.to_string(),
    };
    let user_id = create_user(&env.pool, new).await.expect("user created");
    let (status, body) = api.login(email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "login of {email}: {body}");
    Session {
        user_id,
        access: body["access_token"].as_str().unwrap().to_string(),
        refresh: body["refresh_token"].as_str().unwrap().to_string(),
    }
}

async fn world(env: &TestEnv, api: &Api) -> World {
    let tenant_b_number = "200000000000002".to_string();
    let tenant_b = create_tenant(&env.pool, "Shree Auto", &tenant_b_number, "+919876500002").await;
    let a = Some(env.tenant_id);
    World {
        owner: account(env, api, a, "owner@sai.example", Role::Owner).await,
        manager: account(env, api, a, "manager@sai.example", Role::Manager).await,
        agent: account(env, api, a, "agent@sai.example", Role::Agent).await,
        other_agent: account(env, api, a, "agent2@sai.example", Role::Agent).await,
        owner_b: account(env, api, Some(tenant_b), "owner@shree.example", Role::Owner).await,
        admin: account(env, api, None, "ops@velochat.example", Role::PlatformAdmin).await,
        tenant_b_number,
    }
}

/// Posts a customer message and returns its conversation id once stored.
async fn customer_writes(env: &TestEnv, wa_id: &str, wamid: &str, offset: i64, text: &str) -> Uuid {
    env.post_ok(&env.customer(wa_id).text(wamid, ts(offset), text))
        .await;
    sqlx::query_scalar(
        "SELECT c.id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.wa_id = $1 AND c.tenant_id = $2",
    )
    .bind(wa_id)
    .bind(env.tenant_id)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

/// Waits until the conversation actor has committed a customer's STOP.
async fn wait_opted_out(env: &TestEnv, wa_id: &str) {
    env.eventually(
        "the opt-out to be committed",
        Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, bool>("SELECT opted_out FROM contacts WHERE wa_id = $1")
                .bind(wa_id)
                .fetch_one(&env.pool)
                .await
                .unwrap()
        },
    )
    .await;
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refresh_logout_cycle() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;

    let (status, body) = api.login("owner@sai.example", "wrong password!").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
    let (status, _) = api.login("nobody@sai.example", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let refresh = |token: String| {
        let api = &api;
        async move {
            api.send(
                reqwest::Method::POST,
                "/v1/auth/refresh",
                None,
                Some(json!({ "refresh_token": token })),
            )
            .await
        }
    };
    let (status, rotated) = refresh(w.owner.refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_refresh = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, w.owner.refresh);
    let (status, _) = api
        .get(
            rotated["access_token"].as_str().unwrap(),
            "/v1/conversations",
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Reusing the first token revokes the family, the newer token included.
    let (status, _) = refresh(w.owner.refresh.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = refresh(new_refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the family is revoked");

    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/v1/auth/logout",
            None,
            Some(json!({ "refresh_token": w.agent.refresh })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = refresh(w.agent.refresh.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "logged out");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_access_tokens_rejected() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;

    let (status, _) = api
        .send(reqwest::Method::GET, "/v1/conversations", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "missing token");
    let (status, _) = api.get("not-a-jwt", "/v1/conversations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "malformed token");

    let parts: Vec<&str> = w.agent.access.split('.').collect();
    let forged_payload = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = json!("owner");
        engine.encode(serde_json::to_vec(&claims).unwrap())
    };
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let (status, _) = api.get(&tampered, "/v1/audit").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tampered token");

    let unsigned = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            engine.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        )
    };
    let (status, _) = api.get(&unsigned, "/v1/conversations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "alg none");

    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": w.agent.user_id, "role": "owner", "exp": 4_000_000_000u64, "iat": 0 }),
        &jsonwebtoken::EncodingKey::from_secret(b"some other key of sufficient length!!"),
    )
    .unwrap();
    let (status, _) = api.get(&other_key, "/v1/conversations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrongly signed");

    // Access tokens live 15 minutes, measured on the engine's clock.
    env.clock.advance(chrono::Duration::minutes(14));
    let (status, _) = api.get(&w.agent.access, "/v1/conversations").await;
    assert_eq!(status, StatusCode::OK, "valid at 14 minutes");
    env.clock.advance(chrono::Duration::seconds(61));
    let (status, body) = api.get(&w.agent.access, "/v1/conversations").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "expired at 15 minutes: {body}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_and_tenants_are_enforced() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let conversation = customer_writes(&env, "919812300045", "wamid.R1", 0, "hello").await;
    let contact: Uuid = sqlx::query_scalar("SELECT contact_id FROM conversations WHERE id = $1")
        .bind(conversation)
        .fetch_one(&env.pool)
        .await
        .unwrap();

    // Another dealership's token sees nothing of this one: 404, never 403.
    for path in [
        format!("/v1/conversations/{conversation}"),
        format!("/v1/conversations/{conversation}/messages"),
        format!("/v1/contacts/{contact}"),
    ] {
        let (status, _) = api.get(&w.owner_b.access, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["takeover", "release"] {
        let (status, _) = api
            .post(
                &w.owner_b.access,
                &format!("/v1/conversations/{conversation}/{path}"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = api
        .post(
            &w.owner_b.access,
            &format!("/v1/conversations/{conversation}/messages"),
            json!({ "text": "hi" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, list) = api.get(&w.owner_b.access, "/v1/conversations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (_, audit_b) = api.get(&w.owner_b.access, "/v1/audit?limit=500").await;
    let a_users = [w.owner.user_id, w.agent.user_id, w.manager.user_id].map(|id| json!(id));
    assert!(audit_b["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|row| !a_users.contains(&row["user_id"])));

    // Roles.
    let (status, _) = api.get(&w.agent.access, "/v1/audit").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "agents cannot read the audit trail"
    );
    let (status, _) = api
        .post(
            &w.agent.access,
            &format!("/v1/conversations/{conversation}/assign"),
            json!({ "user_id": w.agent.user_id }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "agents cannot assign");
    let (status, _) = api.get(&w.admin.access, "/v1/conversations").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "platform administrators see no conversations"
    );
    let (status, _) = api.get(&w.owner.access, "/v1/admin/tenants").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, figures) = api.get(&w.admin.access, "/v1/admin/tenants").await;
    assert_eq!(status, StatusCode::OK);
    let sai = figures
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Sai Motors")
        .unwrap();
    assert_eq!(sai["inbound_messages"], 1);
    assert!(
        !figures.to_string().contains("hello"),
        "no message content in platform figures"
    );
    assert!(!w.tenant_b_number.is_empty());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_pagination() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let mut ids = Vec::new();
    for index in 0..5 {
        ids.push(
            customer_writes(
                &env,
                &format!("91980000000{index}"),
                &format!("wamid.L{index}"),
                index,
                "hi",
            )
            .await,
        );
    }
    env.expect_sent(5, Duration::from_millis(300)).await;

    let mut seen = Vec::new();
    let mut path = "/v1/conversations?limit=2".to_string();
    loop {
        let (status, page) = api.get(&w.agent.access, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/conversations?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "every conversation once: {seen:?}");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 5);

    let (status, _) = api
        .post(
            &w.agent.access,
            &format!("/v1/conversations/{}/takeover", ids[0]),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, human) = api
        .get(&w.agent.access, "/v1/conversations?mode=human")
        .await;
    assert_eq!(human["items"].as_array().unwrap().len(), 1);
    let (_, mine) = api
        .get(
            &w.agent.access,
            &format!("/v1/conversations?assigned_to={}", w.agent.user_id),
        )
        .await;
    assert_eq!(mine["items"][0]["id"], json!(ids[0]));
    let (_, ai) = api.get(&w.agent.access, "/v1/conversations?mode=ai").await;
    assert_eq!(ai["items"].as_array().unwrap().len(), 4);

    let (_, unread) = api
        .get(&w.agent.access, "/v1/conversations?unread=true")
        .await;
    assert_eq!(unread["items"].as_array().unwrap().len(), 5);
    api.get(
        &w.agent.access,
        &format!("/v1/conversations/{}/messages", ids[1]),
    )
    .await;
    let (_, unread) = api
        .get(&w.agent.access, "/v1/conversations?unread=true")
        .await;
    assert_eq!(
        unread["items"].as_array().unwrap().len(),
        4,
        "reading the history marks it read"
    );

    customer_writes(&env, "919800000000", "wamid.LSTOP", 10, "STOP").await;
    wait_opted_out(&env, "919800000000").await;
    let (_, opted_out) = api
        .get(&w.agent.access, "/v1/conversations?opted_out=true")
        .await;
    assert_eq!(opted_out["items"].as_array().unwrap().len(), 1);

    for bad in [
        "mode=robot",
        "limit=0",
        "limit=1000",
        "cursor=%%%",
        "unread=maybe",
        "assigned_to=nope",
    ] {
        let (status, body) = api
            .get(&w.agent.access, &format!("/v1/conversations?{bad}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (status, _) = api
        .get(
            &w.agent.access,
            &format!("/v1/conversations/{}", Uuid::new_v4()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .get(&w.agent.access, "/v1/conversations/not-a-uuid")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_in_timestamp_order_with_status() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    // Delivered out of order: Meta's timestamps decide the order.
    let conversation = customer_writes(&env, "919812300045", "wamid.H2", 20, "second").await;
    customer_writes(&env, "919812300045", "wamid.H1", 10, "first").await;
    env.expect_sent(1, Duration::from_millis(500)).await;

    let (status, messages) = api
        .get(
            &w.agent.access,
            &format!("/v1/conversations/{conversation}/messages"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let messages = messages.as_array().unwrap();
    let inbound: Vec<&str> = messages
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(inbound, vec!["first", "second"]);
    let reply = messages
        .iter()
        .find(|m| m["direction"] == "outbound")
        .expect("the auto-reply");
    assert_eq!(reply["status"], "sent");
    assert_eq!(reply["automated"], true);
    let (status, conversation_view) = api
        .get(
            &w.agent.access,
            &format!("/v1/conversations/{conversation}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(conversation_view["mode"], "ai");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn takeover_silences_ai_until_release() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let conversation = customer_writes(&env, "919812300045", "wamid.T1", 0, "price?").await;
    env.expect_sent(1, Duration::from_millis(300)).await;

    let takeover = format!("/v1/conversations/{conversation}/takeover");
    let (status, view) = api.post(&w.agent.access, &takeover, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["mode"], "human");
    assert_eq!(view["assigned_to"], json!(w.agent.user_id));
    let (status, body) = api.post(&w.other_agent.access, &takeover, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "already_taken_over");

    customer_writes(&env, "919812300045", "wamid.T2", 1, "hello? anyone?").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.graph.sent().len(), 1, "no AI reply during a takeover");

    let (status, body) = api
        .post(
            &w.agent.access,
            &format!("/v1/conversations/{conversation}/messages"),
            json!({ "text": "Hi, Ravi here." }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let sent = env.expect_sent(2, Duration::from_millis(300)).await;
    assert_eq!(
        sent[1].body.as_deref(),
        Some("Hi, Ravi here."),
        "staff messages carry no automated label"
    );

    let release = format!("/v1/conversations/{conversation}/release");
    let (status, view) = api.post(&w.agent.access, &release, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["mode"], "ai");
    let (status, body) = api.post(&w.agent.access, &release, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    customer_writes(&env, "919812300045", "wamid.T3", 2, "ok thanks, price?").await;
    let sent = env.expect_sent(3, Duration::from_millis(300)).await;
    assert!(
        sent[2].body.as_deref().unwrap().starts_with("[Auto-reply]"),
        "the AI answers again"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn takeover_drops_reply_in_flight() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    env.llm.set_delay(Duration::from_secs(2));
    let conversation = customer_writes(&env, "919812300045", "wamid.F1", 0, "price?").await;
    env.eventually("the LLM call to start", Duration::from_secs(10), || async {
        env.llm.request_count() == 1
    })
    .await;

    let (status, _) = api
        .post(
            &w.agent.access,
            &format!("/v1/conversations/{conversation}/takeover"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(env.graph.sent().is_empty(), "the late reply was dropped");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_takeover_returns_to_ai() {
    let env = TestEnv::start_with(Options {
        human_idle: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let conversation = customer_writes(&env, "919812300045", "wamid.I1", 0, "hi").await;
    api.post(
        &w.agent.access,
        &format!("/v1/conversations/{conversation}/takeover"),
        json!({}),
    )
    .await;
    env.eventually(
        "the hand-back to the AI",
        Duration::from_secs(10),
        || async {
            let (_, view) = api
                .get(
                    &w.agent.access,
                    &format!("/v1/conversations/{conversation}"),
                )
                .await;
            view["mode"] == "ai"
        },
    )
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_message_rules() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let path = |id: Uuid| format!("/v1/conversations/{id}/messages");

    // Outside the 24-hour window: text is rejected, an approved template goes out.
    let old = env.customer("919800000077").text(
        "wamid.OLD1",
        chrono::Utc::now().timestamp() - 30 * 3600,
        "hello",
    );
    env.post_ok(&old).await;
    let stale: Uuid = sqlx::query_scalar("SELECT c.id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id WHERE ct.wa_id = '919800000077'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let (status, body) = api
        .post(
            &w.agent.access,
            &path(stale),
            json!({ "text": "Still interested?" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "outside_service_window");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("24-hour"));

    let template = json!({ "template": { "name": "follow_up", "language": "en" } });
    let (status, _) = api
        .post(&w.agent.access, &path(stale), template.clone())
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not an approved template"
    );
    sqlx::query(
        "INSERT INTO message_templates (tenant_id, name, language) VALUES ($1, 'follow_up', 'en')",
    )
    .bind(env.tenant_id)
    .execute(&env.pool)
    .await
    .unwrap();
    let (status, body) = api.post(&w.agent.access, &path(stale), template).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let sent = env.graph.wait_for_sent(1, Duration::from_secs(10)).await;
    let template_send = sent
        .iter()
        .find(|s| s.to == "919800000077")
        .expect("template sent");
    assert_eq!(template_send.raw["type"], "template");
    assert_eq!(template_send.raw["template"]["name"], "follow_up");

    // Opted out: rejected by the API.
    let opted = customer_writes(&env, "919800000088", "wamid.OPT1", 0, "STOP").await;
    wait_opted_out(&env, "919800000088").await;
    let (status, body) = api
        .post(&w.agent.access, &path(opted), json!({ "text": "But wait" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "contact_opted_out");
    let contact: Uuid = sqlx::query_scalar("SELECT contact_id FROM conversations WHERE id = $1")
        .bind(opted)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let (status, view) = api
        .get(&w.agent.access, &format!("/v1/contacts/{contact}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["opted_out"], true);
    let (status, _) = api
        .get(&w.agent.access, &format!("/v1/contacts/{}", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Invalid bodies.
    let fresh = customer_writes(&env, "919800000099", "wamid.FR1", 0, "hi").await;
    for bad in [
        json!({}),
        json!({ "text": "  " }),
        json!({ "text": "x".repeat(4097) }),
        json!({ "text": "a", "template": { "name": "n", "language": "en" } }),
        json!({ "text": 5 }),
    ] {
        let (status, body) = api.post(&w.agent.access, &path(fresh), bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }

    // Assignment.
    let assign = format!("/v1/conversations/{fresh}/assign");
    let (status, view) = api
        .post(
            &w.manager.access,
            &assign,
            json!({ "user_id": w.agent.user_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["assigned_to"], json!(w.agent.user_id));
    let (status, _) = api
        .post(
            &w.manager.access,
            &assign,
            json!({ "user_id": w.owner_b.user_id }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another dealership's staff"
    );
    let (status, _) = api
        .post(&w.manager.access, &assign, json!({ "user": "x" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    env.finish().await;
}

/// Reads server-sent events until `predicate` matches one or `timeout` passes.
async fn read_events(
    response: &mut reqwest::Response,
    timeout: Duration,
    predicate: impl Fn(&Value) -> bool,
) -> Vec<(i64, Value)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(chunk) = tokio::time::timeout(remaining, response.chunk()).await else {
            return events;
        };
        let Some(chunk) = chunk.unwrap() else {
            return events;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|v| v.trim().parse::<i64>().unwrap());
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|v| serde_json::from_str::<Value>(v.trim()).unwrap());
            if let (Some(id), Some(data)) = (id, data) {
                let matched = predicate(&data);
                events.push((id, data));
                if matched {
                    return events;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_events_and_resume() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let connect = |last: Option<i64>| {
        let mut request = api
            .http
            .get(format!("{}/v1/events", api.base))
            .bearer_auth(&w.agent.access);
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        request.send()
    };

    let mut stream = connect(None).await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.E1", ts(0), "live?"),
    )
    .await;
    let events = read_events(&mut stream, Duration::from_secs(1), |e| {
        e["data"]["body"] == "live?"
    })
    .await;
    let (first_id, seen) = events.last().expect("an event within a second");
    assert_eq!(seen["kind"], "message.created");
    assert_eq!(seen["data"]["direction"], "inbound");
    let first_id = *first_id;
    drop(stream);

    // Changes while disconnected arrive on reconnect.
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.E2", ts(1), "missed me?"),
    )
    .await;
    let mut resumed = connect(Some(first_id)).await.unwrap();
    let events = read_events(&mut resumed, Duration::from_secs(5), |e| {
        e["data"]["body"] == "missed me?"
    })
    .await;
    assert!(
        events
            .iter()
            .any(|(_, e)| e["data"]["body"] == "missed me?"),
        "{events:?}"
    );
    assert!(
        events.iter().all(|(id, _)| *id > first_id),
        "nothing before Last-Event-ID is repeated"
    );

    let (status, _) = api
        .send(reqwest::Method::GET, "/v1/events", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = api
        .http
        .get(format!("{}/v1/events", api.base))
        .bearer_auth(&w.owner_b.access)
        .send()
        .await
        .unwrap();
    let mut other = other;
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.E3", ts(2), "private"),
    )
    .await;
    let leaked = read_events(&mut other, Duration::from_millis(1500), |_| true).await;
    assert!(
        leaked.is_empty(),
        "another dealership's feed stays silent: {leaked:?}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_is_audited() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let before: i64 = env.count("SELECT count(*) FROM audit_log").await;

    api.get(&w.agent.access, "/v1/conversations").await;
    api.get(
        &w.agent.access,
        &format!("/v1/conversations/{}", Uuid::new_v4()),
    )
    .await;
    api.get(&w.agent.access, "/v1/audit").await;
    api.send(reqwest::Method::GET, "/v1/conversations", None, None)
        .await;
    let after: i64 = env.count("SELECT count(*) FROM audit_log").await;
    assert_eq!(
        after - before,
        4,
        "one row per request, failed ones included"
    );

    let rows: Vec<(Option<Uuid>, String, i32)> =
        sqlx::query_as("SELECT user_id, path, status FROM audit_log ORDER BY id DESC LIMIT 4")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(rows[0], (None, "/v1/conversations".to_string(), 401));
    assert_eq!(rows[1].2, 403);
    assert_eq!(rows[2].2, 404);
    assert_eq!(
        rows[3],
        (Some(w.agent.user_id), "/v1/conversations".to_string(), 200)
    );

    let (status, page) = api.get(&w.owner.access, "/v1/audit?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert!(page["next_before"].is_i64());
    let (status, _) = api.get(&w.owner.access, "/v1/audit?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let tampering = sqlx::query("UPDATE audit_log SET status = 200")
        .execute(&env.pool)
        .await;
    assert!(tampering.is_err(), "the audit trail is append-only");
    let deleting = sqlx::query("DELETE FROM audit_log")
        .execute(&env.pool)
        .await;
    assert!(deleting.is_err());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_describes_every_route() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let (status, spec) = api
        .send(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let paths = spec["paths"].as_object().expect("paths");

    let expected = [
        ("post", "/v1/auth/login"),
        ("post", "/v1/auth/refresh"),
        ("post", "/v1/auth/logout"),
        ("get", "/v1/conversations"),
        ("get", "/v1/conversations/{id}"),
        ("get", "/v1/conversations/{id}/messages"),
        ("post", "/v1/conversations/{id}/messages"),
        ("post", "/v1/conversations/{id}/takeover"),
        ("post", "/v1/conversations/{id}/release"),
        ("post", "/v1/conversations/{id}/assign"),
        ("get", "/v1/events"),
        ("get", "/v1/audit"),
        ("get", "/v1/contacts/{id}"),
        ("get", "/v1/admin/tenants"),
    ];
    let mut described = 0;
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            described += 1;
            assert!(
                expected.contains(&(method.as_str(), path.as_str())),
                "undocumented test list misses {method} {path}"
            );
            // Every described route exists: without credentials it answers 401 or 422, never 404.
            let url_path = path.replace("{id}", &Uuid::new_v4().to_string());
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, _) = api
                .send(method.clone(), &url_path, None, Some(json!({})))
                .await;
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::UNPROCESSABLE_ENTITY,
                "{method} {path} answered {status}"
            );
        }
    }
    assert_eq!(described, expected.len(), "every route is in /openapi.json");
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_and_invalid_paths_per_route() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let conversation = customer_writes(&env, "919812300045", "wamid.P1", 0, "hello").await;
    let contact: Uuid = sqlx::query_scalar("SELECT contact_id FROM conversations WHERE id = $1")
        .bind(conversation)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let c = format!("/v1/conversations/{conversation}");

    // A platform administrator reaches no dealership route.
    let routes = [
        (reqwest::Method::GET, "/v1/conversations".to_string()),
        (reqwest::Method::GET, c.clone()),
        (reqwest::Method::GET, format!("{c}/messages")),
        (reqwest::Method::POST, format!("{c}/messages")),
        (reqwest::Method::POST, format!("{c}/takeover")),
        (reqwest::Method::POST, format!("{c}/release")),
        (reqwest::Method::POST, format!("{c}/assign")),
        (reqwest::Method::GET, format!("/v1/contacts/{contact}")),
        (reqwest::Method::GET, "/v1/events".to_string()),
        (reqwest::Method::GET, "/v1/audit".to_string()),
    ];
    for (method, path) in &routes {
        let body = (method == reqwest::Method::POST)
            .then(|| json!({ "text": "x", "user_id": w.agent.user_id }));
        let (status, _) = api
            .send(method.clone(), path, Some(&w.admin.access), body)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }

    // Another dealership's owner gets 404 on assignment too.
    let (status, _) = api
        .post(
            &w.owner_b.access,
            &format!("{c}/assign"),
            json!({ "user_id": w.agent.user_id }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Invalid parameters.
    let (status, _) = api
        .get(&w.agent.access, &format!("{c}/messages?limit=0"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .get(&w.agent.access, &format!("{c}/messages?limit=ten"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api.get(&w.owner.access, "/v1/audit?before=yesterday").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .post(
            &w.agent.access,
            "/v1/conversations/not-a-uuid/takeover",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api.get(&w.agent.access, "/v1/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_takeovers_have_one_winner() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;
    let conversation = customer_writes(&env, "919812300045", "wamid.CT1", 0, "hello").await;
    let path = format!("/v1/conversations/{conversation}/takeover");
    let (first, second) = tokio::join!(
        api.post(&w.agent.access, &path, json!({})),
        api.post(&w.other_agent.access, &path, json!({})),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);

    // The loser may not release or answer the winner's conversation either.
    let (winner, loser) = if first.0 == StatusCode::OK {
        (&w.agent, &w.other_agent)
    } else {
        (&w.other_agent, &w.agent)
    };
    let (status, _) = api
        .post(
            &loser.access,
            &format!("/v1/conversations/{conversation}/release"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api
        .post(
            &loser.access,
            &format!("/v1/conversations/{conversation}/messages"),
            json!({ "text": "me too" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, view) = api
        .get(&winner.access, &format!("/v1/conversations/{conversation}"))
        .await;
    assert_eq!(view["assigned_to"], json!(winner.user_id));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_account_and_expiry_end_access() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let w = world(&env, &api).await;

    // An event stream ends when its access token expires.
    let mut stream = api
        .http
        .get(format!("{}/v1/events", api.base))
        .bearer_auth(&w.manager.access)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    env.clock.advance(chrono::Duration::minutes(16));
    env.post_ok(
        &env.customer("919812300045")
            .text("wamid.EXP1", ts(0), "after expiry"),
    )
    .await;
    let late = read_events(&mut stream, Duration::from_secs(2), |_| true).await;
    assert!(
        late.is_empty(),
        "an expired stream delivers nothing: {late:?}"
    );

    // A disabled account is refused even with an unexpired token.
    let (_, fresh) = api.login("agent@sai.example", PASSWORD).await;
    let token = fresh["access_token"].as_str().unwrap().to_string();
    sqlx::query("UPDATE staff_users SET disabled_at = now() WHERE id = $1")
        .bind(w.agent.user_id)
        .execute(&env.pool)
        .await
        .unwrap();
    let (status, _) = api.get(&token, "/v1/conversations").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_and_methods() {
    let env = TestEnv::start().await;
    let api = Api::new(&env);
    let url = format!("{}/v1/auth/login", api.base);
    let malformed = api
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let plain = api
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = api
        .send(reqwest::Method::DELETE, "/v1/conversations", None, None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&body), "method_not_allowed");

    let w = world(&env, &api).await;
    let odd = api
        .http
        .get(format!("{}/v1/events", api.base))
        .bearer_auth(&w.agent.access)
        .header("last-event-id", i64::MIN.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), StatusCode::OK);
    let (status, _) = api.get(&w.agent.access, "/v1/conversations?cursor=LTkyMjMzNzIwMzY4NTQ3NzU4MDhfMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a cursor before the epoch"
    );
    env.finish().await;
}
