use super::*;
use serde_json::json;

/// Wraps `value` in the envelope Meta sends, as one change of field `messages`.
fn envelope(value: Value) -> Vec<u8> {
    envelope_with_field("messages", value)
}

fn envelope_with_field(field: &str, value: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{ "field": field, "value": value }]
        }]
    }))
    .unwrap()
}

fn messages_value(messages: Value) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": "919876500001",
            "phone_number_id": "106540352242922"
        },
        "contacts": [{ "profile": { "name": "Asha Patil" }, "wa_id": "919812300045" }],
        "messages": messages
    })
}

/// Parses one message of the given type and part, and returns its kind.
fn kind_of(type_name: &str, part: Value) -> MessageKind {
    let message = json!({
        "from": "919812300045",
        "id": "wamid.TEST",
        "timestamp": "1764836400",
        "type": type_name,
        type_name: part
    });
    let changes = parse_webhook(&envelope(messages_value(json!([message])))).unwrap();
    assert_eq!(
        changes[0].messages.len(),
        1,
        "skipped: {:?}",
        changes[0].skipped
    );
    changes[0].messages[0].kind.clone()
}

fn single_change(body: &[u8]) -> ChangeValue {
    let mut changes = parse_webhook(body).unwrap();
    assert_eq!(changes.len(), 1);
    changes.remove(0)
}

#[test]
fn text_message_sample() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"919876500001","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Asha Patil"},"wa_id":"919812300045"}],
  "messages":[{"from":"919812300045","id":"wamid.HBgMOTE5ODEyMzAwMDQ1FQIAEhggQzQ1RjI3","timestamp":"1764836400",
               "type":"text","text":{"body":"What is the on-road price of the Jupiter in Aurangabad?"}}]}}]}]}"#;
    let change = single_change(body);

    assert_eq!(change.field, "messages");
    assert_eq!(
        change.business_account_id.as_deref(),
        Some("102290129340398")
    );
    assert_eq!(change.phone_number_id.as_deref(), Some("106540352242922"));
    assert_eq!(change.display_phone_number.as_deref(), Some("919876500001"));
    assert_eq!(
        change.contacts,
        vec![Contact {
            wa_id: "919812300045".into(),
            profile_name: Some("Asha Patil".into()),
        }]
    );
    assert!(change.skipped.is_empty());
    assert!(change.statuses.is_empty());

    let message = &change.messages[0];
    assert_eq!(message.id, "wamid.HBgMOTE5ODEyMzAwMDQ1FQIAEhggQzQ1RjI3");
    assert_eq!(message.from, "919812300045");
    assert_eq!(message.timestamp, 1_764_836_400);
    assert!(!message.timestamp_missing);
    assert_eq!(message.context_id, None);
    assert_eq!(message.referral, None);
    assert_eq!(
        message.kind,
        MessageKind::Text {
            body: "What is the on-road price of the Jupiter in Aurangabad?".into()
        }
    );
    assert_eq!(message.kind.type_name(), "text");
    assert_eq!(
        message.kind.text(),
        Some("What is the on-road price of the Jupiter in Aurangabad?")
    );
    assert_eq!(message.kind.quick_reply_payload(), None);
    assert_eq!(
        message.raw["text"]["body"],
        json!("What is the on-road price of the Jupiter in Aurangabad?")
    );
}

#[test]
fn button_reply_sample_with_context() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"919876500001","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Asha Patil"},"wa_id":"919812300045"}],
  "messages":[{"from":"919812300045","id":"wamid.HBgMOTE5ODEyMzAwMDQ1FQIAEhggRDk5QTEx","timestamp":"1764836460",
               "context":{"from":"919876500001","id":"wamid.HBgMOTE5ODEyMzAwMDQ1FQIAERgSQUJDMTIz"},
               "type":"interactive","interactive":{"type":"button_reply",
                 "button_reply":{"id":"book-test-ride","title":"Book a test ride"}}}]}}]}]}"#;
    let message = single_change(body).messages.remove(0);

    assert_eq!(
        message.context_id.as_deref(),
        Some("wamid.HBgMOTE5ODEyMzAwMDQ1FQIAERgSQUJDMTIz")
    );
    assert_eq!(
        message.kind,
        MessageKind::ButtonReply {
            id: "book-test-ride".into(),
            title: "Book a test ride".into()
        }
    );
    assert_eq!(message.kind.type_name(), "interactive");
    assert_eq!(message.kind.text(), Some("Book a test ride"));
    assert_eq!(message.kind.quick_reply_payload(), Some("book-test-ride"));
}

#[test]
fn statuses_sample_with_errors() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"919876500001","phone_number_id":"106540352242922"},
  "statuses":[
    {"id":"wamid.HBgMOTE5ODEyMzAwMDQ1FQIAERgSQUJDMTIz","status":"delivered","timestamp":"1764836470",
     "recipient_id":"919812300045","biz_opaque_callback_data":"outbox:8f1c2e",
     "pricing":{"billable":false,"pricing_model":"PMP","type":"free_customer_service","category":"service"}},
    {"id":"wamid.HBgMOTE5ODEyMzAwMDQ1FQIAERgSRUZHNDU2","status":"failed","timestamp":"1764836471",
     "recipient_id":"919812300046",
     "errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable",
                "error_data":{"details":"Message Undeliverable."}}]}]}}]}]}"#;
    let change = single_change(body);
    assert!(change.messages.is_empty());
    assert!(change.skipped.is_empty());
    assert_eq!(change.statuses.len(), 2);

    let delivered = &change.statuses[0];
    assert_eq!(delivered.id, "wamid.HBgMOTE5ODEyMzAwMDQ1FQIAERgSQUJDMTIz");
    assert_eq!(delivered.status, StatusKind::Delivered);
    assert_eq!(delivered.timestamp, 1_764_836_470);
    assert!(!delivered.timestamp_missing);
    assert_eq!(delivered.recipient_id.as_deref(), Some("919812300045"));
    assert_eq!(
        delivered.biz_opaque_callback_data.as_deref(),
        Some("outbox:8f1c2e")
    );
    assert!(delivered.errors.is_empty());
    assert_eq!(delivered.raw["pricing"]["category"], json!("service"));

    let failed = &change.statuses[1];
    assert_eq!(failed.status, StatusKind::Failed);
    assert_eq!(failed.status.as_str(), "failed");
    assert_eq!(failed.biz_opaque_callback_data, None);
    assert_eq!(
        failed.errors,
        vec![ErrorDetail {
            code: 131_026,
            title: Some("Message undeliverable".into()),
            message: Some("Message undeliverable".into()),
            details: Some("Message Undeliverable.".into()),
        }]
    );
}

#[test]
fn status_kinds_map_to_wire_strings() {
    let statuses: Vec<Value> = ["sent", "delivered", "read", "played", "failed", "deleted"]
        .iter()
        .enumerate()
        .map(|(i, status)| json!({"id": format!("wamid.{i}"), "status": status, "timestamp": "1764836470"}))
        .collect();
    let change = single_change(&envelope(json!({ "statuses": statuses })));
    let kinds: Vec<StatusKind> = change.statuses.iter().map(|s| s.status.clone()).collect();

    assert_eq!(
        kinds,
        vec![
            StatusKind::Sent,
            StatusKind::Delivered,
            StatusKind::Read,
            StatusKind::Played,
            StatusKind::Failed,
            StatusKind::Other("deleted".into()),
        ]
    );
    let strings: Vec<&str> = kinds.iter().map(StatusKind::as_str).collect();
    assert_eq!(
        strings,
        ["sent", "delivered", "read", "played", "failed", "deleted"]
    );
}

#[test]
fn statuses_without_id_or_status_are_skipped() {
    let change = single_change(&envelope(json!({ "statuses": [
        {"status": "read", "timestamp": "1764836470"},
        {"id": "wamid.NOSTATUS", "timestamp": "1764836470"},
        {"id": "wamid.GOOD", "status": "read", "timestamp": 1764836470},
        {"id": "wamid.ODDERRORS", "status": "failed", "timestamp": "x",
         "errors": [{"title": "no code"}, "not an object", {"code": "131047"}]}
    ]})));

    assert_eq!(change.skipped.len(), 2);
    assert_eq!(change.skipped[0].reason, "status has no `id`");
    assert_eq!(change.skipped[1].reason, "status has no `status` value");
    assert_eq!(change.skipped[1].raw["id"], json!("wamid.NOSTATUS"));

    assert_eq!(change.statuses.len(), 2);
    assert_eq!(change.statuses[0].id, "wamid.GOOD");
    assert_eq!(change.statuses[0].timestamp, 1_764_836_470);

    let odd = &change.statuses[1];
    assert!(odd.timestamp_missing);
    assert_eq!(
        odd.errors,
        vec![ErrorDetail {
            code: 131_047,
            title: None,
            message: None,
            details: None,
        }]
    );
}

#[test]
fn media_messages() {
    let image = kind_of(
        "image",
        json!({"id": "1001", "mime_type": "image/jpeg", "sha256": "abc=", "caption": "Is this colour in stock?"}),
    );
    assert_eq!(
        image,
        MessageKind::Image(Media {
            id: "1001".into(),
            mime_type: Some("image/jpeg".into()),
            caption: Some("Is this colour in stock?".into()),
            filename: None,
            sha256: Some("abc=".into()),
        })
    );
    assert_eq!(image.type_name(), "image");
    assert_eq!(image.text(), Some("Is this colour in stock?"));

    let video = kind_of("video", json!({"id": "1002", "mime_type": "video/mp4"}));
    assert!(matches!(&video, MessageKind::Video(media) if media.id == "1002"));
    assert_eq!(video.type_name(), "video");
    assert_eq!(video.text(), None);

    let audio = kind_of(
        "audio",
        json!({"id": "1003", "mime_type": "audio/ogg; codecs=opus", "voice": true}),
    );
    assert!(
        matches!(&audio, MessageKind::Audio(media) if media.mime_type.as_deref() == Some("audio/ogg; codecs=opus"))
    );
    assert_eq!(audio.type_name(), "audio");

    let sticker = kind_of(
        "sticker",
        json!({"id": "1004", "mime_type": "image/webp", "animated": false}),
    );
    assert!(matches!(&sticker, MessageKind::Sticker(media) if media.id == "1004"));
    assert_eq!(sticker.type_name(), "sticker");

    let document = kind_of(
        "document",
        json!({"id": "1005", "mime_type": "application/pdf", "filename": "quote.pdf", "caption": "Quote"}),
    );
    assert!(
        matches!(&document, MessageKind::Document(media) if media.filename.as_deref() == Some("quote.pdf"))
    );
    assert_eq!(document.type_name(), "document");
    assert_eq!(document.text(), Some("Quote"));
}

#[test]
fn media_without_id_is_unsupported() {
    for part in [
        json!({"mime_type": "image/jpeg"}),
        json!({"id": ""}),
        json!({"id": 7}),
        json!(null),
    ] {
        assert_eq!(
            kind_of("image", part.clone()),
            MessageKind::Unsupported {
                type_name: "image".into(),
                errors: vec![]
            },
            "part {part}"
        );
    }
}

#[test]
fn location_message() {
    let kind = kind_of(
        "location",
        json!({"latitude": 19.8762, "longitude": 75.3433, "name": "Showroom", "address": "Jalna Road, Aurangabad"}),
    );
    assert_eq!(
        kind,
        MessageKind::Location {
            latitude: 19.8762,
            longitude: 75.3433,
            name: Some("Showroom".into()),
            address: Some("Jalna Road, Aurangabad".into()),
        }
    );
    assert_eq!(kind.type_name(), "location");
    assert_eq!(kind.text(), None);

    let unnamed = kind_of("location", json!({"latitude": -33.5, "longitude": -70}));
    assert!(matches!(
        unnamed,
        MessageKind::Location {
            name: None,
            address: None,
            ..
        }
    ));
}

#[test]
fn location_out_of_range_is_unsupported() {
    let unsupported = MessageKind::Unsupported {
        type_name: "location".into(),
        errors: vec![],
    };
    for part in [
        json!({"latitude": 91.0, "longitude": 75.0}),
        json!({"latitude": 19.0, "longitude": -180.5}),
        json!({"latitude": "19.8", "longitude": 75.0}),
        json!({"longitude": 75.0}),
    ] {
        assert_eq!(
            kind_of("location", part.clone()),
            unsupported,
            "part {part}"
        );
    }
}

#[test]
fn contacts_message() {
    let cards = json!([{"name": {"formatted_name": "Ravi Kulkarni", "first_name": "Ravi"},
                        "phones": [{"phone": "+91 98123 00047", "type": "CELL", "wa_id": "919812300047"}]}]);
    let kind = kind_of("contacts", cards.clone());
    assert_eq!(kind, MessageKind::Contacts(cards));
    assert_eq!(kind.type_name(), "contacts");

    assert!(matches!(
        kind_of("contacts", json!({"name": "not an array"})),
        MessageKind::Unsupported { .. }
    ));
}

#[test]
fn list_reply_message() {
    let kind = kind_of(
        "interactive",
        json!({"type": "list_reply", "list_reply": {"id": "model-jupiter-zx", "title": "Jupiter ZX", "description": "110 cc"}}),
    );
    assert_eq!(
        kind,
        MessageKind::ListReply {
            id: "model-jupiter-zx".into(),
            title: "Jupiter ZX".into(),
            description: Some("110 cc".into()),
        }
    );
    assert_eq!(kind.type_name(), "interactive");
    assert_eq!(kind.text(), Some("Jupiter ZX"));
    assert_eq!(kind.quick_reply_payload(), Some("model-jupiter-zx"));
}

#[test]
fn unknown_interactive_type_is_unsupported() {
    let kind = kind_of(
        "interactive",
        json!({"type": "nfm_reply", "nfm_reply": {"response_json": "{}", "name": "flow"}}),
    );
    assert_eq!(
        kind,
        MessageKind::Unsupported {
            type_name: "interactive".into(),
            errors: vec![]
        }
    );
    assert_eq!(kind.type_name(), "interactive");

    let missing_title = kind_of(
        "interactive",
        json!({"type": "button_reply", "button_reply": {"id": "x"}}),
    );
    assert!(matches!(missing_title, MessageKind::Unsupported { .. }));
}

#[test]
fn template_button_message() {
    let kind = kind_of(
        "button",
        json!({"payload": "STOP_PROMOTIONS", "text": "Stop promotions"}),
    );
    assert_eq!(
        kind,
        MessageKind::Button {
            payload: Some("STOP_PROMOTIONS".into()),
            text: Some("Stop promotions".into()),
        }
    );
    assert_eq!(kind.type_name(), "button");
    assert_eq!(kind.text(), Some("Stop promotions"));
    assert_eq!(kind.quick_reply_payload(), Some("STOP_PROMOTIONS"));

    let text_only = kind_of("button", json!({"text": "Yes"}));
    assert_eq!(text_only.quick_reply_payload(), None);
    assert_eq!(text_only.text(), Some("Yes"));
}

#[test]
fn reaction_messages() {
    let added = kind_of(
        "reaction",
        json!({"message_id": "wamid.OURS", "emoji": "\u{1F44D}"}),
    );
    assert_eq!(
        added,
        MessageKind::Reaction {
            message_id: "wamid.OURS".into(),
            emoji: Some("👍".into()),
        }
    );
    assert_eq!(added.type_name(), "reaction");
    assert_eq!(added.text(), None);

    let removed = MessageKind::Reaction {
        message_id: "wamid.OURS".into(),
        emoji: None,
    };
    assert_eq!(
        kind_of("reaction", json!({"message_id": "wamid.OURS", "emoji": ""})),
        removed
    );
    assert_eq!(
        kind_of("reaction", json!({"message_id": "wamid.OURS"})),
        removed
    );

    assert!(matches!(
        kind_of("reaction", json!({"emoji": "👍"})),
        MessageKind::Unsupported { .. }
    ));
}

#[test]
fn system_message() {
    let kind = kind_of(
        "system",
        json!({"body": "User A changed from 919812300045 to 919812300099", "wa_id": "919812300099", "type": "user_changed_number"}),
    );
    assert_eq!(
        kind,
        MessageKind::System {
            body: Some("User A changed from 919812300045 to 919812300099".into()),
            kind: Some("user_changed_number".into()),
        }
    );
    assert_eq!(kind.type_name(), "system");
    assert_eq!(kind.text(), None);
}

#[test]
fn order_message() {
    let order = json!({"catalog_id": "555", "text": "Helmet please",
                       "product_items": [{"product_retailer_id": "helmet-m", "quantity": 1, "item_price": 1499, "currency": "INR"}]});
    let kind = kind_of("order", order.clone());
    assert_eq!(kind, MessageKind::Order(order));
    assert_eq!(kind.type_name(), "order");
    assert!(matches!(
        kind_of("order", json!("cart")),
        MessageKind::Unsupported { .. }
    ));
}

#[test]
fn unsupported_message_keeps_errors() {
    let message = json!({
        "from": "919812300045", "id": "wamid.UNSUPPORTED", "timestamp": "1764836400",
        "type": "unsupported",
        "unsupported": {"type": "edit"},
        "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."}}]
    });
    let change = single_change(&envelope(messages_value(json!([message]))));
    let kind = &change.messages[0].kind;

    assert_eq!(
        *kind,
        MessageKind::Unsupported {
            type_name: "unsupported".into(),
            errors: vec![ErrorDetail {
                code: 131_051,
                title: Some("Message type unknown".into()),
                message: Some("Message type unknown".into()),
                details: Some("Message type is currently not supported.".into()),
            }],
        }
    );
    assert_eq!(kind.type_name(), "unsupported");
    assert_eq!(kind.text(), None);
    assert_eq!(change.messages[0].raw["unsupported"]["type"], json!("edit"));
}

#[test]
fn unknown_and_unrecognised_types_are_unsupported() {
    let message = |id: &str, extra: Value| {
        let mut message = json!({"from": "919812300045", "id": id, "timestamp": "1764836400"});
        message
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        message
    };
    let change = single_change(&envelope(messages_value(json!([
        message(
            "wamid.UNKNOWN",
            json!({"type": "unknown",
            "errors": [{"code": 131051, "details": "Message type is not currently supported", "title": "Unsupported message type"}]})
        ),
        message(
            "wamid.POLL",
            json!({"type": "poll_creation", "poll_creation": {"name": "Colour?"}})
        ),
        message("wamid.NOTYPE", json!({"text": {"body": "hi"}})),
        message("wamid.NUMTYPE", json!({"type": 5})),
    ]))));

    let type_names: Vec<&str> = change.messages.iter().map(|m| m.kind.type_name()).collect();
    assert_eq!(
        type_names,
        ["unknown", "poll_creation", "unknown", "unknown"]
    );
    assert!(change
        .messages
        .iter()
        .all(|m| matches!(m.kind, MessageKind::Unsupported { .. })));
    assert_eq!(
        change.messages[0].kind,
        MessageKind::Unsupported {
            type_name: "unknown".into(),
            errors: vec![ErrorDetail {
                code: 131_051,
                title: Some("Unsupported message type".into()),
                message: None,
                details: Some("Message type is not currently supported".into()),
            }],
        }
    );
}

#[test]
fn broken_items_do_not_fail_batch() {
    let change = single_change(&envelope(messages_value(json!([
        {"from": "919812300045", "id": "wamid.FIRST", "timestamp": "1764836400", "type": "text", "text": {"body": "first"}},
        {"from": "919812300045", "timestamp": "1764836401", "type": "text", "text": {"body": "no id"}},
        {"id": "wamid.NOFROM", "timestamp": "1764836402", "type": "text", "text": {"body": "no sender"}},
        "not an object",
        42,
        {"from": "919812300045", "id": "wamid.BADTEXT", "timestamp": "1764836403", "type": "text", "text": {"body": 12}},
        {"from": "", "id": "wamid.EMPTYFROM", "type": "text", "text": {"body": "x"}},
        {"from": "919812300045", "id": "wamid.LAST", "timestamp": "1764836404", "type": "text", "text": {"body": "last"}},
    ]))));

    let ids: Vec<&str> = change.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["wamid.FIRST", "wamid.BADTEXT", "wamid.LAST"]);
    assert_eq!(change.messages[0].kind.text(), Some("first"));
    assert_eq!(
        change.messages[1].kind,
        MessageKind::Unsupported {
            type_name: "text".into(),
            errors: vec![]
        }
    );
    assert_eq!(change.messages[1].raw["text"]["body"], json!(12));
    assert_eq!(change.messages[2].kind.text(), Some("last"));

    let reasons: Vec<&str> = change.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "message has no `id`",
            "message has no `from`",
            "message has no `id`",
            "message has no `id`",
            "message has no `from`",
        ]
    );
    assert_eq!(change.skipped[2].raw, json!("not an object"));
    assert_eq!(change.skipped[3].raw, json!(42));
}

#[test]
fn timestamp_number_accepted() {
    let change = single_change(&envelope(messages_value(json!([
        {"from": "919812300045", "id": "wamid.NUM", "timestamp": 1764836400, "type": "text", "text": {"body": "x"}},
        {"from": "919812300045", "id": "wamid.PADDED", "timestamp": " 1764836401 ", "type": "text", "text": {"body": "x"}},
    ]))));
    assert_eq!(change.messages[0].timestamp, 1_764_836_400);
    assert!(!change.messages[0].timestamp_missing);
    assert_eq!(change.messages[1].timestamp, 1_764_836_401);
    assert!(!change.messages[1].timestamp_missing);
}

#[test]
fn invalid_timestamps_fall_back_to_now() {
    let cases = [
        json!(null),
        json!("abc"),
        json!(""),
        json!("-5"),
        json!("1764836400000"),
        json!("99999999999999999999"),
        json!(1764836400.5),
        json!(true),
    ];
    let messages: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, ts)| json!({"from": "919812300045", "id": format!("wamid.{i}"), "timestamp": ts, "type": "text", "text": {"body": "x"}}))
        .chain([json!({"from": "919812300045", "id": "wamid.ABSENT", "type": "text", "text": {"body": "x"}})])
        .collect();

    let before = chrono::Utc::now().timestamp();
    let change = single_change(&envelope(messages_value(Value::Array(messages))));
    let after = chrono::Utc::now().timestamp();

    assert_eq!(change.messages.len(), cases.len() + 1);
    for message in &change.messages {
        assert!(message.timestamp_missing, "message {}", message.id);
        assert!(
            (before..=after).contains(&message.timestamp),
            "message {} got {}",
            message.id,
            message.timestamp
        );
    }
}

#[test]
fn non_ascii_escapes_are_decoded() {
    // नमस्ते, ₹ and 🙏 escaped the way Meta escapes them, with `\/` for `/`.
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
        "metadata":{"phone_number_id":"106540352242922"},
        "contacts":[{"profile":{"name":"\u0906\u0936\u093e"},"wa_id":"919812300045"}],
        "messages":[{"from":"919812300045","id":"wamid.X","timestamp":"1764836400","type":"text",
                     "text":{"body":"\u0928\u092e\u0938\u094d\u0924\u0947 \u20b9 87,500 \ud83d\ude4f 1\/2"}}]}}]}]}"#;
    let change = single_change(body);

    assert_eq!(change.contacts[0].profile_name.as_deref(), Some("आशा"));
    assert_eq!(change.messages[0].kind.text(), Some("नमस्ते ₹ 87,500 🙏 1/2"));
}

#[test]
fn referral_is_kept() {
    let message = json!({
        "from": "919812300045", "id": "wamid.AD", "timestamp": "1764836400", "type": "text",
        "text": {"body": "Is this offer still on?"},
        "referral": {"source_url": "https://fb.me/x", "source_type": "ad", "source_id": "1201", "headline": "Diwali offer"}
    });
    let change = single_change(&envelope(messages_value(json!([message]))));
    assert_eq!(
        change.messages[0].referral.as_ref().unwrap()["source_id"],
        json!("1201")
    );
}

#[test]
fn user_preferences_change() {
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "919876500001", "phone_number_id": "106540352242922"},
        "contacts": [{"wa_id": "919812300045"}],
        "user_preferences": [
            {"wa_id": "919812300045", "detail": "User requested to stop marketing messages",
             "category": "marketing_messages", "value": "stop", "timestamp": 1764836400},
            {"wa_id": "919812300046", "value": "resume", "timestamp": "1764836401"},
            {"wa_id": "919812300047", "timestamp": 1764836402},
            {"value": "stop", "timestamp": 1764836403}
        ]
    });
    let change = single_change(&envelope_with_field("user_preferences", value));

    assert_eq!(change.field, "user_preferences");
    assert_eq!(
        change.contacts,
        vec![Contact {
            wa_id: "919812300045".into(),
            profile_name: None
        }]
    );
    assert_eq!(
        change.user_preferences,
        vec![
            UserPreference {
                wa_id: "919812300045".into(),
                category: Some("marketing_messages".into()),
                value: "stop".into(),
                timestamp: 1_764_836_400,
                timestamp_missing: false,
                detail: Some("User requested to stop marketing messages".into()),
            },
            UserPreference {
                wa_id: "919812300046".into(),
                category: None,
                value: "resume".into(),
                timestamp: 1_764_836_401,
                timestamp_missing: false,
                detail: None,
            },
        ]
    );
    let reasons: Vec<&str> = change.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "user preference has no `value`",
            "user preference has no `wa_id`"
        ]
    );
}

#[test]
fn value_errors_are_kept() {
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "106540352242922"},
        "errors": [{"code": 131000, "title": "Something went wrong", "message": "Something went wrong",
                    "error_data": {"details": "Unknown error"}}]
    });
    let change = single_change(&envelope(value));
    assert_eq!(change.errors.len(), 1);
    assert_eq!(change.errors[0]["code"], json!(131000));
}

#[test]
fn contacts_without_wa_id_are_skipped() {
    let value = json!({"contacts": [{"profile": {"name": "No id"}}, {"wa_id": 919812300045u64}]});
    let change = single_change(&envelope(value));
    assert_eq!(
        change.contacts,
        vec![Contact {
            wa_id: "919812300045".into(),
            profile_name: None
        }]
    );
    assert_eq!(change.skipped.len(), 1);
    assert_eq!(change.skipped[0].reason, "contact has no `wa_id`");
}

#[test]
fn non_array_lists_are_skipped() {
    let value = json!({"messages": {"id": "wamid.X"}, "statuses": "none", "contacts": null});
    let change = single_change(&envelope(value));
    let reasons: Vec<&str> = change.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["`messages` is not an array", "`statuses` is not an array"]
    );
    assert!(change.messages.is_empty());
    assert!(change.contacts.is_empty());
}

#[test]
fn broken_entries_and_changes_are_reported() {
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [
            "not an object",
            {"id": "1"},
            {"id": "2", "changes": [
                "not an object",
                {"field": "messages"},
                {"field": "messages", "value": {"metadata": {"phone_number_id": 106540352242922u64},
                    "messages": [{"from": "919812300045", "id": "wamid.OK", "timestamp": "1764836400",
                                  "type": "text", "text": {"body": "still here"}}]}}
            ]}
        ]
    }))
    .unwrap();
    let changes = parse_webhook(&body).unwrap();

    let reasons: Vec<&str> = changes
        .iter()
        .flat_map(|c| c.skipped.iter().map(|s| s.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            "entry is not an object",
            "entry has no `changes` array",
            "change has no `value` object",
            "change has no `value` object",
        ]
    );
    assert_eq!(changes[1].business_account_id.as_deref(), Some("1"));
    assert_eq!(changes[3].field, "messages");

    let last = &changes[4];
    assert_eq!(last.business_account_id.as_deref(), Some("2"));
    assert_eq!(last.phone_number_id.as_deref(), Some("106540352242922"));
    assert_eq!(last.messages[0].kind.text(), Some("still here"));
}

#[test]
fn empty_entry_array_is_valid() {
    let changes = parse_webhook(br#"{"object":"whatsapp_business_account","entry":[]}"#).unwrap();
    assert!(changes.is_empty());
}

#[test]
fn envelope_errors() {
    let cases: [(&[u8], &str); 9] = [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"{\"entry\": [}", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[]", "not an object"),
        (b"\"entry\"", "not an object"),
        (b"{}", "no entry"),
        (b"{\"entry\": {}}", "no entry"),
        (b"{\"entry\": null}", "no entry"),
    ];
    for (body, expected) in cases {
        let error = parse_webhook(body).unwrap_err();
        let matched = match expected {
            "invalid JSON" => matches!(error, PayloadError::InvalidJson(_)),
            "not an object" => matches!(error, PayloadError::NotAnObject),
            _ => matches!(error, PayloadError::MissingEntries),
        };
        assert!(
            matched,
            "body {:?} gave {error:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn payload_error_messages() {
    let invalid = parse_webhook(b"{").unwrap_err().to_string();
    assert!(
        invalid.starts_with("webhook body is not valid JSON: "),
        "{invalid}"
    );
    assert_eq!(
        PayloadError::MissingEntries.to_string(),
        "webhook body has no `entry` array"
    );
}
