//! Builds Cloud API webhook bodies the way Meta sends them, and posts them signed, for the
//! demo, the tests and the load generator.

use serde_json::{json, Value};

use crate::whatsapp::sign;

/// One simulated customer writing to one business number.
#[derive(Clone, Debug)]
pub struct Customer {
    pub phone_number_id: String,
    pub display_phone: String,
    pub wa_id: String,
    pub name: String,
}

impl Customer {
    /// Builds a webhook body carrying one text message.
    pub fn text(&self, wamid: &str, timestamp: i64, body: &str) -> Value {
        self.message(json!({
            "from": self.wa_id, "id": wamid, "timestamp": timestamp.to_string(),
            "type": "text", "text": { "body": body }
        }))
    }

    /// Builds a webhook body carrying one message item as given.
    pub fn message(&self, message: Value) -> Value {
        self.value(json!({
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": self.display_phone.trim_start_matches('+'), "phone_number_id": self.phone_number_id },
            "contacts": [{ "profile": { "name": self.name }, "wa_id": self.wa_id }],
            "messages": [message]
        }))
    }

    /// Builds a webhook body around a change value.
    pub fn value(&self, value: Value) -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": value }] }]
        })
    }
}

/// Serialises a body with non-ASCII characters escaped as `\uXXXX` and `/` as `\/`, as Meta
/// does, so that signatures are checked over bytes that differ from a plain re-serialisation.
pub fn meta_bytes(body: &Value) -> Vec<u8> {
    let plain = serde_json::to_string(body).expect("a JSON value serialises");
    let mut escaped = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '/' => escaped.push_str("\\/"),
            c if c.is_ascii() => escaped.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    escaped.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    escaped.into_bytes()
}

/// Posts signed webhook bodies to an engine.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    url: String,
    app_secret: String,
}

impl WebhookClient {
    pub fn new(base_url: &str, app_secret: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("{}/webhooks/whatsapp", base_url.trim_end_matches('/')),
            app_secret: app_secret.to_string(),
        }
    }

    /// Posts `body` signed with the app secret and returns the HTTP status.
    pub async fn post(&self, body: &Value) -> reqwest::Result<reqwest::StatusCode> {
        self.post_bytes(meta_bytes(body)).await
    }

    /// Posts raw bytes signed with the app secret.
    pub async fn post_bytes(&self, bytes: Vec<u8>) -> reqwest::Result<reqwest::StatusCode> {
        let signature = sign(self.app_secret.as_bytes(), &bytes);
        self.post_with_signature(bytes, Some(&signature)).await
    }

    /// Posts raw bytes with the given signature header, or none.
    pub async fn post_with_signature(
        &self,
        bytes: Vec<u8>,
        signature: Option<&str>,
    ) -> reqwest::Result<reqwest::StatusCode> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        Ok(request.body(bytes).send().await?.status())
    }
}
