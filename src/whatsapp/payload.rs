//! Parsing of the webhook bodies that Meta's Cloud API POSTs.
//!
//! Only the envelope (a JSON object with an `entry` array) can fail the whole body.
//! Everything below it is parsed item by item, because one batch can carry many
//! messages and statuses, and an item the engine cannot read must never cost the others.
//! Items without a usable id end up in [`ChangeValue::skipped`], and messages whose
//! type-specific part cannot be read become [`MessageKind::Unsupported`].

use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest accepted unix timestamp in seconds: 9999-12-31T23:59:59Z, the last second
/// that chrono and PostgreSQL `timestamptz` can both represent as a four-digit year.
/// Larger values, such as timestamps in milliseconds, are treated as invalid.
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// Reasons to reject a whole webhook body with HTTP 400.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("webhook body is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    #[error("webhook body is not a JSON object")]
    NotAnObject,
    #[error("webhook body has no `entry` array")]
    MissingEntries,
}

/// One `entry[].changes[]` item: its `field` and the contents of its `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeValue {
    /// The subscribed webhook field, such as `messages` or `user_preferences`. Empty
    /// when the change had none.
    pub field: String,
    /// `entry[].id`: the WhatsApp Business Account id.
    pub business_account_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub display_phone_number: Option<String>,
    pub contacts: Vec<Contact>,
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<Status>,
    /// `value.errors[]`, kept as sent because Meta reports account-level problems here.
    pub errors: Vec<Value>,
    pub user_preferences: Vec<UserPreference>,
    /// Items that could not be used, for logging. They must not be stored as events.
    pub skipped: Vec<SkippedItem>,
}

/// A `value.contacts[]` item: the WhatsApp user who sent the messages in the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub wa_id: String,
    pub profile_name: Option<String>,
}

/// An item dropped because it has no usable id, with the reason and the item as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedItem {
    pub reason: String,
    pub raw: Value,
}

/// A `value.messages[]` item sent by a WhatsApp user.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The WhatsApp message id (`wamid.…`), the deduplication key.
    pub id: String,
    /// The sender's WhatsApp id.
    pub from: String,
    /// Unix seconds. The current time when the message had no valid timestamp, see
    /// `timestamp_missing`.
    pub timestamp: i64,
    /// Whether `timestamp` was missing, not an integer or out of range, so that the
    /// parser substituted the time of parsing.
    pub timestamp_missing: bool,
    pub kind: MessageKind,
    /// `context.id`: the message this one replies to.
    pub context_id: Option<String>,
    /// `referral`: the ad that led the user to write, as sent.
    pub referral: Option<Value>,
    /// The whole message item as sent.
    pub raw: Value,
}

/// The type-specific part of an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    Text {
        body: String,
    },
    Image(Media),
    Video(Media),
    Audio(Media),
    Sticker(Media),
    Document(Media),
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
    /// `contacts[]`: contact cards the user shared, as sent.
    Contacts(Value),
    /// An `interactive` message of type `button_reply`: a reply button tapped.
    ButtonReply {
        id: String,
        title: String,
    },
    /// An `interactive` message of type `list_reply`: a list row chosen.
    ListReply {
        id: String,
        title: String,
        description: Option<String>,
    },
    /// A `button` message: a quick-reply button of a template tapped.
    Button {
        payload: Option<String>,
        text: Option<String>,
    },
    /// A reaction to `message_id`. `emoji` is `None` when the user removed the
    /// reaction, which Meta sends as an empty or absent emoji.
    Reaction {
        message_id: String,
        emoji: Option<String>,
    },
    /// A notice from WhatsApp itself, for example that the user changed number.
    System {
        body: Option<String>,
        kind: Option<String>,
    },
    /// `order`: a cart sent from the catalogue, as sent.
    Order(Value),
    /// A message the engine cannot read: Meta's `unsupported` and `unknown` types, any
    /// type this parser does not know, and known types whose part failed to parse.
    /// `type_name` is the message's `type`, or `unknown` when it had none.
    Unsupported {
        type_name: String,
        errors: Vec<ErrorDetail>,
    },
}

/// The media object of an image, video, audio, sticker or document message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Media {
    /// The media id, which the Graph API resolves to a download URL.
    pub id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

impl MessageKind {
    /// Returns the Cloud API `type` string of the message, such as `text`,
    /// `interactive` or `button`.
    pub fn type_name(&self) -> &str {
        match self {
            MessageKind::Text { .. } => "text",
            MessageKind::Image(_) => "image",
            MessageKind::Video(_) => "video",
            MessageKind::Audio(_) => "audio",
            MessageKind::Sticker(_) => "sticker",
            MessageKind::Document(_) => "document",
            MessageKind::Location { .. } => "location",
            MessageKind::Contacts(_) => "contacts",
            MessageKind::ButtonReply { .. } | MessageKind::ListReply { .. } => "interactive",
            MessageKind::Button { .. } => "button",
            MessageKind::Reaction { .. } => "reaction",
            MessageKind::System { .. } => "system",
            MessageKind::Order(_) => "order",
            MessageKind::Unsupported { type_name, .. } => type_name,
        }
    }

    /// Returns what the user wrote or tapped: a text body, a media caption, the title
    /// of a reply button or list row, or the text of a template button.
    pub fn text(&self) -> Option<&str> {
        match self {
            MessageKind::Text { body } => Some(body),
            MessageKind::Image(media)
            | MessageKind::Video(media)
            | MessageKind::Audio(media)
            | MessageKind::Sticker(media)
            | MessageKind::Document(media) => media.caption.as_deref(),
            MessageKind::ButtonReply { title, .. } | MessageKind::ListReply { title, .. } => {
                Some(title)
            }
            MessageKind::Button { text, .. } => text.as_deref(),
            _ => None,
        }
    }

    /// Returns the id that the business attached to what the user tapped: the
    /// template button payload, or the reply button or list row id.
    pub fn quick_reply_payload(&self) -> Option<&str> {
        match self {
            MessageKind::Button { payload, .. } => payload.as_deref(),
            MessageKind::ButtonReply { id, .. } | MessageKind::ListReply { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// A `value.statuses[]` item: the delivery state of a message the business sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The id of the sent message (`wamid.…`).
    pub id: String,
    pub status: StatusKind,
    /// Unix seconds. The current time when the status had no valid timestamp, see
    /// `timestamp_missing`.
    pub timestamp: i64,
    pub timestamp_missing: bool,
    pub recipient_id: Option<String>,
    /// The value given with the send request, echoed back by Meta.
    pub biz_opaque_callback_data: Option<String>,
    pub errors: Vec<ErrorDetail>,
    /// The whole status item as sent, `conversation` and `pricing` included.
    pub raw: Value,
}

/// The `status` value of a status item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
    /// A value this parser does not know, as sent.
    Other(String),
}

impl StatusKind {
    /// Returns the Cloud API string of the status.
    pub fn as_str(&self) -> &str {
        match self {
            StatusKind::Sent => "sent",
            StatusKind::Delivered => "delivered",
            StatusKind::Read => "read",
            StatusKind::Played => "played",
            StatusKind::Failed => "failed",
            StatusKind::Other(other) => other,
        }
    }

    fn from_wire(value: &str) -> Self {
        match value {
            "sent" => StatusKind::Sent,
            "delivered" => StatusKind::Delivered,
            "read" => StatusKind::Read,
            "played" => StatusKind::Played,
            "failed" => StatusKind::Failed,
            other => StatusKind::Other(other.to_string()),
        }
    }
}

/// An item of an `errors[]` array on a status or an unsupported message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: i64,
    pub title: Option<String>,
    pub message: Option<String>,
    /// `error_data.details`.
    pub details: Option<String>,
}

/// A `value.user_preferences[]` item: the user stopped or resumed marketing messages
/// from WhatsApp's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPreference {
    pub wa_id: String,
    /// `marketing_messages` in every version documented so far.
    pub category: Option<String>,
    /// `stop` or `resume`.
    pub value: String,
    /// Unix seconds, which Meta sends as an integer here. The current time when
    /// missing or invalid, see `timestamp_missing`.
    pub timestamp: i64,
    pub timestamp_missing: bool,
    /// Meta's description, such as "User requested to stop marketing messages".
    pub detail: Option<String>,
}

/// Parses a webhook body into its changes.
///
/// Fails only when the body is not JSON, is not an object, or has no `entry` array.
/// An entry or change that is not an object, or a change without a `value` object,
/// yields a `ChangeValue` whose only content is a skipped item, so that the caller
/// can log it.
///
/// NOTE: serde_json rejects a string with an unpaired UTF-16 surrogate escape such as
/// `"\ud83d"`, so such a body fails as `InvalidJson` as a whole, and Meta's
/// redeliveries of it fail the same way.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<ChangeValue>, PayloadError> {
    let root: Value = serde_json::from_slice(body)?;
    let Value::Object(mut root) = root else {
        return Err(PayloadError::NotAnObject);
    };
    let Some(Value::Array(entries)) = root.remove("entry") else {
        return Err(PayloadError::MissingEntries);
    };

    let now = chrono::Utc::now().timestamp();
    let mut changes = Vec::new();
    for entry in entries {
        parse_entry(entry, now, &mut changes);
    }
    Ok(changes)
}

fn parse_entry(entry: Value, now: i64, out: &mut Vec<ChangeValue>) {
    let Value::Object(mut entry) = entry else {
        out.push(ChangeValue::with_skipped(
            "",
            None,
            "entry is not an object",
            entry,
        ));
        return;
    };
    let business_account_id = id_string(entry.get("id"));
    let Some(Value::Array(changes)) = entry.remove("changes") else {
        let raw = Value::Object(entry);
        out.push(ChangeValue::with_skipped(
            "",
            business_account_id,
            "entry has no `changes` array",
            raw,
        ));
        return;
    };
    for change in changes {
        out.push(parse_change(change, business_account_id.clone(), now));
    }
}

fn parse_change(change: Value, business_account_id: Option<String>, now: i64) -> ChangeValue {
    let field = change
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(Value::Object(value)) = change.get("value") else {
        return ChangeValue::with_skipped(
            &field,
            business_account_id,
            "change has no `value` object",
            change,
        );
    };

    let metadata = value.get("metadata");
    let mut parsed = ChangeValue {
        phone_number_id: id_string(metadata.and_then(|m| m.get("phone_number_id"))),
        display_phone_number: id_string(metadata.and_then(|m| m.get("display_phone_number"))),
        ..ChangeValue::with_field(&field, business_account_id)
    };

    for item in array_items(value, "contacts", &mut parsed.skipped) {
        match parse_contact(item) {
            Ok(contact) => parsed.contacts.push(contact),
            Err(skipped) => parsed.skipped.push(skipped),
        }
    }
    for item in array_items(value, "messages", &mut parsed.skipped) {
        match parse_message(item, now) {
            Ok(message) => parsed.messages.push(message),
            Err(skipped) => parsed.skipped.push(skipped),
        }
    }
    for item in array_items(value, "statuses", &mut parsed.skipped) {
        match parse_status(item, now) {
            Ok(status) => parsed.statuses.push(status),
            Err(skipped) => parsed.skipped.push(skipped),
        }
    }
    for item in array_items(value, "user_preferences", &mut parsed.skipped) {
        match parse_user_preference(item, now) {
            Ok(preference) => parsed.user_preferences.push(preference),
            Err(skipped) => parsed.skipped.push(skipped),
        }
    }
    parsed.errors = array_items(value, "errors", &mut parsed.skipped)
        .cloned()
        .collect();
    parsed
}

impl ChangeValue {
    fn with_field(field: &str, business_account_id: Option<String>) -> Self {
        ChangeValue {
            field: field.to_string(),
            business_account_id,
            phone_number_id: None,
            display_phone_number: None,
            contacts: Vec::new(),
            messages: Vec::new(),
            statuses: Vec::new(),
            errors: Vec::new(),
            user_preferences: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn with_skipped(
        field: &str,
        business_account_id: Option<String>,
        reason: &str,
        raw: Value,
    ) -> Self {
        let mut change = ChangeValue::with_field(field, business_account_id);
        change.skipped.push(skip(reason, raw));
        change
    }
}

/// Returns the items of the array `value[key]`. An absent key yields nothing, and a
/// present key that is not an array is recorded as skipped.
fn array_items<'a>(
    value: &'a Map<String, Value>,
    key: &str,
    skipped: &mut Vec<SkippedItem>,
) -> std::slice::Iter<'a, Value> {
    match value.get(key) {
        Some(Value::Array(items)) => items.iter(),
        None | Some(Value::Null) => [].iter(),
        Some(other) => {
            skipped.push(skip(&format!("`{key}` is not an array"), other.clone()));
            [].iter()
        }
    }
}

fn skip(reason: &str, raw: Value) -> SkippedItem {
    SkippedItem {
        reason: reason.to_string(),
        raw,
    }
}

fn parse_contact(item: &Value) -> Result<Contact, SkippedItem> {
    let wa_id =
        id_string(item.get("wa_id")).ok_or_else(|| skip("contact has no `wa_id`", item.clone()))?;
    let profile_name = item
        .get("profile")
        .and_then(|profile| profile.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Contact {
        wa_id,
        profile_name,
    })
}

fn parse_message(item: &Value, now: i64) -> Result<InboundMessage, SkippedItem> {
    let id = id_string(item.get("id")).ok_or_else(|| skip("message has no `id`", item.clone()))?;
    let from =
        id_string(item.get("from")).ok_or_else(|| skip("message has no `from`", item.clone()))?;
    let (timestamp, timestamp_missing) = timestamp_or_now(item.get("timestamp"), now);

    let type_name = item
        .get("type")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or("unknown");
    let kind = parse_message_kind(type_name, item).unwrap_or_else(|error| {
        tracing::debug!(message_id = %id, type_name, %error, "message part failed to parse");
        MessageKind::Unsupported {
            type_name: type_name.to_string(),
            errors: parse_error_details(item.get("errors")),
        }
    });

    Ok(InboundMessage {
        id,
        from,
        timestamp,
        timestamp_missing,
        kind,
        context_id: id_string(item.get("context").and_then(|context| context.get("id"))),
        referral: item.get("referral").filter(|r| !r.is_null()).cloned(),
        raw: item.clone(),
    })
}

#[derive(Deserialize)]
struct TextPart {
    body: String,
}

#[derive(Deserialize)]
struct LocationPart {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InteractivePart {
    ButtonReply { button_reply: ReplyPart },
    ListReply { list_reply: ReplyPart },
}

#[derive(Deserialize)]
struct ReplyPart {
    id: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct ButtonPart {
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ReactionPart {
    message_id: String,
    #[serde(default)]
    emoji: Option<String>,
}

#[derive(Deserialize)]
struct SystemPart {
    #[serde(default)]
    body: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Parses the part of `item` named after its type. An error means the message is
/// stored as unsupported, so the error text is only for logs.
fn parse_message_kind(type_name: &str, item: &Value) -> Result<MessageKind, String> {
    let part = item.get(type_name).cloned().unwrap_or(Value::Null);
    let kind = match type_name {
        "text" => {
            let text: TextPart = from_part(part)?;
            MessageKind::Text { body: text.body }
        }
        "image" => MessageKind::Image(parse_media(part)?),
        "video" => MessageKind::Video(parse_media(part)?),
        "audio" => MessageKind::Audio(parse_media(part)?),
        "sticker" => MessageKind::Sticker(parse_media(part)?),
        "document" => MessageKind::Document(parse_media(part)?),
        "location" => parse_location(part)?,
        "contacts" => match part {
            Value::Array(_) => MessageKind::Contacts(part),
            _ => return Err("`contacts` is not an array".to_string()),
        },
        "interactive" => match from_part(part)? {
            InteractivePart::ButtonReply { button_reply } => MessageKind::ButtonReply {
                id: button_reply.id,
                title: button_reply.title,
            },
            InteractivePart::ListReply { list_reply } => MessageKind::ListReply {
                id: list_reply.id,
                title: list_reply.title,
                description: list_reply.description,
            },
        },
        "button" => {
            let button: ButtonPart = from_part(part)?;
            MessageKind::Button {
                payload: button.payload,
                text: button.text,
            }
        }
        "reaction" => {
            let reaction: ReactionPart = from_part(part)?;
            MessageKind::Reaction {
                message_id: reaction.message_id,
                emoji: reaction.emoji.filter(|emoji| !emoji.is_empty()),
            }
        }
        "system" => {
            let system: SystemPart = from_part(part)?;
            MessageKind::System {
                body: system.body,
                kind: system.kind,
            }
        }
        "order" => match part {
            Value::Object(_) => MessageKind::Order(part),
            _ => return Err("`order` is not an object".to_string()),
        },
        other => return Err(format!("message type `{other}` is not supported")),
    };
    Ok(kind)
}

fn from_part<T: serde::de::DeserializeOwned>(part: Value) -> Result<T, String> {
    serde_json::from_value(part).map_err(|error| error.to_string())
}

fn parse_media(part: Value) -> Result<Media, String> {
    let media: Media = from_part(part)?;
    if media.id.trim().is_empty() {
        return Err("media `id` is empty".to_string());
    }
    Ok(media)
}

fn parse_location(part: Value) -> Result<MessageKind, String> {
    let location: LocationPart = from_part(part)?;
    if !(-90.0..=90.0).contains(&location.latitude) {
        return Err(format!("latitude {} is out of range", location.latitude));
    }
    if !(-180.0..=180.0).contains(&location.longitude) {
        return Err(format!("longitude {} is out of range", location.longitude));
    }
    Ok(MessageKind::Location {
        latitude: location.latitude,
        longitude: location.longitude,
        name: location.name,
        address: location.address,
    })
}

fn parse_status(item: &Value, now: i64) -> Result<Status, SkippedItem> {
    let id = id_string(item.get("id")).ok_or_else(|| skip("status has no `id`", item.clone()))?;
    let status = item
        .get("status")
        .and_then(Value::as_str)
        .filter(|status| !status.is_empty())
        .map(StatusKind::from_wire)
        .ok_or_else(|| skip("status has no `status` value", item.clone()))?;
    let (timestamp, timestamp_missing) = timestamp_or_now(item.get("timestamp"), now);

    Ok(Status {
        id,
        status,
        timestamp,
        timestamp_missing,
        recipient_id: id_string(item.get("recipient_id")),
        biz_opaque_callback_data: item
            .get("biz_opaque_callback_data")
            .and_then(Value::as_str)
            .map(str::to_string),
        errors: parse_error_details(item.get("errors")),
        raw: item.clone(),
    })
}

fn parse_user_preference(item: &Value, now: i64) -> Result<UserPreference, SkippedItem> {
    let wa_id = id_string(item.get("wa_id"))
        .ok_or_else(|| skip("user preference has no `wa_id`", item.clone()))?;
    let value = item
        .get("value")
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| skip("user preference has no `value`", item.clone()))?
        .to_string();
    let (timestamp, timestamp_missing) = timestamp_or_now(item.get("timestamp"), now);
    let optional_string = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);

    Ok(UserPreference {
        wa_id,
        category: optional_string("category"),
        value,
        timestamp,
        timestamp_missing,
        detail: optional_string("detail"),
    })
}

/// Parses an `errors[]` array, dropping items without an integer `code` because the
/// code is what retry and failure handling act on. The raw item keeps the rest.
fn parse_error_details(errors: Option<&Value>) -> Vec<ErrorDetail> {
    let Some(Value::Array(errors)) = errors else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(|error| {
            let code = integer(error.get("code")?)?;
            let string = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
            // Older unsupported-message payloads put `details` beside `code`.
            let details = string(error.get("error_data").and_then(|data| data.get("details")))
                .or_else(|| string(error.get("details")));
            Some(ErrorDetail {
                code,
                title: string(error.get("title")),
                message: string(error.get("message")),
                details,
            })
        })
        .collect()
}

/// Returns an id sent as a non-blank string, or as an integer.
fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) if !id.trim().is_empty() => Some(id.clone()),
        Value::Number(number) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Returns the timestamp in unix seconds and `false`, or `now` and `true` when it is
/// missing, not an integer (Meta sends a string of digits, a number is accepted too)
/// or outside 0..=`MAX_TIMESTAMP`.
fn timestamp_or_now(value: Option<&Value>, now: i64) -> (i64, bool) {
    match value.and_then(integer) {
        Some(seconds) if (0..=MAX_TIMESTAMP).contains(&seconds) => (seconds, false),
        _ => (now, true),
    }
}

#[cfg(test)]
mod tests;
