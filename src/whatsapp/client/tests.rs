use super::*;
use crate::graph_stub::{GraphStandIn, ScriptedResponse};

const PHONE_NUMBER_ID: &str = "106540352242922";
const TOKEN: &str = "EAAsecret-token-value";

async fn stand_in_and_client() -> (GraphStandIn, GraphClient) {
    let stand_in = GraphStandIn::start().await.unwrap();
    let client = GraphClient::new(&stand_in.base_url(), Duration::from_secs(5)).unwrap();
    (stand_in, client)
}

fn api_error(http_status: u16, code: i64) -> SendError {
    SendError::Api {
        http_status,
        code,
        message: "test".into(),
        details: None,
    }
}

#[tokio::test]
async fn send_text_posts_cloud_api_request() {
    let (stand_in, client) = stand_in_and_client().await;
    let body = "The Jupiter ZX is ₹ 87,500 on-road. नमस्ते 🙏";

    let sent = client
        .send_text(
            PHONE_NUMBER_ID,
            TOKEN,
            "+919812300045",
            body,
            "outbox:8f1c2e",
        )
        .await
        .unwrap();

    let recorded = stand_in.sent();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(Some(&sent.wamid), request.wamid.as_ref());
    assert!(sent.wamid.starts_with("wamid."));
    assert_eq!(sent.wa_id.as_deref(), Some("919812300045"));
    assert_eq!(request.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(request.bearer_token.as_deref(), Some(TOKEN));
    assert_eq!(
        request.raw,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+919812300045",
            "type": "text",
            "text": {"preview_url": false, "body": body},
            "biz_opaque_callback_data": "outbox:8f1c2e"
        })
    );
}

#[tokio::test]
async fn empty_callback_data_is_left_out() {
    let (stand_in, client) = stand_in_and_client().await;
    client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "hi", "")
        .await
        .unwrap();
    let request = &stand_in.sent()[0];
    assert_eq!(request.callback_data, None);
    assert!(request.raw.get("biz_opaque_callback_data").is_none());
}

#[tokio::test]
async fn base_url_with_trailing_slash() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let base_url = format!("{}/", stand_in.base_url());
    let client = GraphClient::new(&base_url, Duration::from_secs(5)).unwrap();
    client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "hi", "")
        .await
        .unwrap();
    assert_eq!(stand_in.sent()[0].phone_number_id, PHONE_NUMBER_ID);
}

#[tokio::test]
async fn phone_number_id_is_path_escaped() {
    let (stand_in, client) = stand_in_and_client().await;
    client
        .send_text("12/../34", TOKEN, "919812300045", "hi", "")
        .await
        .unwrap();
    assert_eq!(stand_in.sent()[0].phone_number_id, "12/../34");
}

#[tokio::test]
async fn rate_limit_error_is_retriable() {
    let (stand_in, client) = stand_in_and_client().await;
    stand_in.push_responses([ScriptedResponse::Error {
        http_status: 400,
        code: 130429,
        message: "(#130429) Rate limit hit".into(),
    }]);

    let error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "hi", "outbox:1")
        .await
        .unwrap_err();

    assert_eq!(
        error,
        SendError::Api {
            http_status: 400,
            code: 130429,
            message: "(#130429) Rate limit hit".into(),
            details: Some("(#130429) Rate limit hit".into()),
        }
    );
    assert_eq!(error.code(), Some(130429));
    assert!(error.is_retriable());
    assert!(!error.may_have_been_accepted());
    assert!(stand_in.sent().is_empty());
}

#[tokio::test]
async fn window_closed_error_is_permanent() {
    let (stand_in, client) = stand_in_and_client().await;
    stand_in.push_responses([ScriptedResponse::Error {
        http_status: 400,
        code: 131047,
        message: "Re-engagement message".into(),
    }]);
    let error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "hi", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(131047));
    assert!(!error.is_retriable());
}

#[tokio::test]
async fn missing_token_is_permanent_190() {
    let (stand_in, client) = stand_in_and_client().await;
    let error = client
        .send_text(PHONE_NUMBER_ID, "  ", "919812300045", "hi", "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SendError::Api {
                http_status: 401,
                code: 190,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_retriable());
    assert_eq!(stand_in.requests().len(), 1);
}

#[tokio::test]
async fn overlong_body_is_rejected_with_100() {
    let (_stand_in, client) = stand_in_and_client().await;
    let body = "अ".repeat(4097);
    let error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", &body, "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            SendError::Api {
                http_status: 400,
                code: 100,
                details: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_retriable());
}

#[tokio::test]
async fn server_error_with_unknown_code_is_retriable() {
    let (stand_in, client) = stand_in_and_client().await;
    stand_in.push_responses([
        ScriptedResponse::Error {
            http_status: 503,
            code: 999_999,
            message: "Service temporarily unavailable".into(),
        },
        ScriptedResponse::Error {
            http_status: 400,
            code: 999_999,
            message: "Unknown problem".into(),
        },
    ]);
    let first = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "a", "")
        .await
        .unwrap_err();
    assert!(first.is_retriable(), "{first:?}");
    let second = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "b", "")
        .await
        .unwrap_err();
    assert!(!second.is_retriable(), "{second:?}");
}

#[tokio::test]
async fn timeout_after_send_is_uncertain() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let client = GraphClient::new(&stand_in.base_url(), Duration::from_millis(300)).unwrap();
    stand_in.push_responses([ScriptedResponse::Delay(Duration::from_millis(1500))]);

    let error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "hi", "outbox:late")
        .await
        .unwrap_err();

    assert!(matches!(error, SendError::Uncertain(_)), "{error:?}");
    assert!(error.may_have_been_accepted());
    assert!(!error.is_retriable());
    // The stand-in, like Meta, keeps the send although the client gave up.
    let sent = stand_in.wait_for_sent(1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].callback_data.as_deref(), Some("outbox:late"));
}

#[tokio::test]
async fn refused_connection_is_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let client =
        GraphClient::new(&format!("http://{address}/v23.0"), Duration::from_secs(5)).unwrap();

    let error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "hi", "")
        .await
        .unwrap_err();

    assert!(matches!(error, SendError::Connect(_)), "{error:?}");
    assert!(error.is_retriable());
    assert!(!error.may_have_been_accepted());
    assert_eq!(error.code(), None);
}

#[tokio::test]
async fn gateway_page_is_invalid_response() {
    let (stand_in, client) = stand_in_and_client().await;
    stand_in.push_responses([
        ScriptedResponse::Raw {
            http_status: 502,
            body: "<html>Bad Gateway</html>".into(),
        },
        ScriptedResponse::Raw {
            http_status: 400,
            body: "not json".into(),
        },
    ]);
    let gateway = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "a", "")
        .await
        .unwrap_err();
    assert_eq!(
        gateway,
        SendError::InvalidResponse {
            http_status: 502,
            body: "<html>Bad Gateway</html>".into()
        }
    );
    assert!(gateway.is_retriable());
    assert!(!gateway.may_have_been_accepted());

    let client_error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "b", "")
        .await
        .unwrap_err();
    assert!(!client_error.is_retriable());
}

#[tokio::test]
async fn success_without_id_may_have_been_accepted() {
    let (stand_in, client) = stand_in_and_client().await;
    stand_in.push_responses([ScriptedResponse::Raw {
        http_status: 200,
        body: r#"{"messaging_product":"whatsapp","messages":[]}"#.into(),
    }]);
    let error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "a", "")
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        SendError::InvalidResponse {
            http_status: 200,
            ..
        }
    ));
    assert!(error.may_have_been_accepted());
    assert!(!error.is_retriable());
}

#[tokio::test]
async fn error_without_error_data() {
    let (stand_in, client) = stand_in_and_client().await;
    stand_in.push_responses([ScriptedResponse::Raw {
        http_status: 400,
        body: r#"{"error":{"message":"(#131026) Message Undeliverable.","type":"OAuthException","code":131026,"fbtrace_id":"A1"}}"#.into(),
    }]);
    let error = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "a", "")
        .await
        .unwrap_err();
    assert_eq!(
        error,
        SendError::Api {
            http_status: 400,
            code: 131026,
            message: "(#131026) Message Undeliverable.".into(),
            details: None,
        }
    );
}

#[tokio::test]
async fn token_with_newline_is_invalid_request() {
    let (stand_in, client) = stand_in_and_client().await;
    let error = client
        .send_text(PHONE_NUMBER_ID, "abc\ndef", "919812300045", "a", "")
        .await
        .unwrap_err();
    assert!(matches!(error, SendError::InvalidRequest(_)), "{error:?}");
    assert!(!error.is_retriable());
    assert!(stand_in.requests().is_empty());
    assert!(!format!("{error} {error:?}").contains("abc"));
}

#[tokio::test]
async fn token_trailing_newline_is_trimmed() {
    let (stand_in, client) = stand_in_and_client().await;
    client
        .send_text(
            PHONE_NUMBER_ID,
            &format!("{TOKEN}\n"),
            "919812300045",
            "a",
            "",
        )
        .await
        .unwrap();
    assert_eq!(stand_in.sent()[0].bearer_token.as_deref(), Some(TOKEN));
}

#[tokio::test]
async fn token_never_in_debug_or_display() {
    let (stand_in, client) = stand_in_and_client().await;
    stand_in.push_responses([
        ScriptedResponse::Error {
            http_status: 401,
            code: 190,
            message: "Error validating access token".into(),
        },
        ScriptedResponse::Delay(Duration::from_secs(2)),
    ]);
    let rejected = client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "a", "")
        .await
        .unwrap_err();
    let short_client = GraphClient::new(&stand_in.base_url(), Duration::from_millis(200)).unwrap();
    let timed_out = short_client
        .send_text(PHONE_NUMBER_ID, TOKEN, "919812300045", "b", "")
        .await
        .unwrap_err();

    let outputs = [
        format!("{client:?}"),
        format!("{rejected} {rejected:?}"),
        format!("{timed_out} {timed_out:?}"),
    ];
    for output in outputs {
        assert!(!output.contains(TOKEN), "{output}");
    }
}

#[test]
fn new_rejects_invalid_base_urls() {
    for base_url in [
        "",
        "graph.facebook.com/v23.0",
        "mailto:someone@example.in",
        "ftp://127.0.0.1/v23.0",
    ] {
        let result = GraphClient::new(base_url, Duration::from_secs(1));
        assert!(result.is_err(), "{base_url:?} was accepted");
    }
    assert!(GraphClient::new(DEFAULT_GRAPH_API_BASE, Duration::from_secs(1)).is_ok());
}

#[test]
fn loopback_hosts_are_detected() {
    for base_url in [
        "http://127.0.0.1:9/v23.0",
        "http://[::1]:9/v23.0",
        "http://LOCALHOST/v23.0",
    ] {
        assert!(is_loopback(&Url::parse(base_url).unwrap()), "{base_url}");
    }
    for base_url in [DEFAULT_GRAPH_API_BASE, "http://10.0.0.1/v23.0"] {
        assert!(!is_loopback(&Url::parse(base_url).unwrap()), "{base_url}");
    }
}

#[test]
fn retriable_codes() {
    for code in [2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004] {
        assert!(is_retriable_code(code), "code {code}");
        assert!(api_error(400, code).is_retriable(), "code {code} on 400");
    }
}

#[test]
fn permanent_codes_on_any_status() {
    let permanent = [
        100, 131008, 131009, 131021, 131026, 131047, 131050, 131051, 132000, 132007, 132016, 368,
        190,
    ];
    for code in permanent {
        assert!(!is_retriable_code(code), "code {code}");
        assert!(!api_error(400, code).is_retriable(), "code {code} on 400");
        assert!(!api_error(500, code).is_retriable(), "code {code} on 500");
    }
}

#[test]
fn unknown_code_follows_http_status() {
    assert!(!is_retriable_code(132017));
    assert!(api_error(500, 132017).is_retriable());
    assert!(api_error(503, 1).is_retriable());
    assert!(!api_error(400, 132017).is_retriable());
    assert!(!api_error(429, 1).is_retriable());
}

#[test]
fn error_messages_name_the_cause() {
    assert_eq!(
        api_error(400, 131047).to_string(),
        "Graph API rejected the send with HTTP 400, error code 131047: test"
    );
    assert!(SendError::Connect("connection refused".into())
        .to_string()
        .contains("connection refused"));
}
