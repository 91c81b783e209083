use super::*;

const TOKEN: &str = "EAAtest-token";

/// Returns an HTTP client that ignores proxy settings, so requests stay on 127.0.0.1.
fn local_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post_raw(
    stand_in: &GraphStandIn,
    phone_number_id: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = local_client()
        .post(format!(
            "{}/{phone_number_id}/messages",
            stand_in.base_url()
        ))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn text_request(to: &str, body: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": false, "body": body},
        "biz_opaque_callback_data": "outbox:1"
    })
}

fn assert_error_shape(answer: &Value, code: i64) {
    let error = &answer["error"];
    assert_eq!(error["code"], json!(code), "{answer}");
    assert_eq!(error["type"], json!("OAuthException"));
    assert!(error["message"].is_string());
    assert_eq!(error["error_data"]["messaging_product"], json!("whatsapp"));
    assert!(error["error_data"]["details"].is_string());
    assert!(error["fbtrace_id"].is_string());
}

#[test]
fn version_matches_client_default() {
    assert!(crate::whatsapp::DEFAULT_GRAPH_API_BASE.ends_with(&format!("/{GRAPH_API_VERSION}")));
}

#[tokio::test]
async fn accepts_valid_text_send() {
    let stand_in = GraphStandIn::start().await.unwrap();
    assert!(stand_in.base_url().starts_with("http://127.0.0.1:"));
    assert!(stand_in.base_url().ends_with("/v23.0"));

    let (status, answer) = post_raw(
        &stand_in,
        "106540352242922",
        Some(TOKEN),
        text_request("+919812300045", "नमस्ते"),
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(answer["messaging_product"], json!("whatsapp"));
    assert_eq!(answer["contacts"][0]["input"], json!("+919812300045"));
    assert_eq!(answer["contacts"][0]["wa_id"], json!("919812300045"));
    let wamid = answer["messages"][0]["id"].as_str().unwrap();
    assert!(wamid.starts_with("wamid."));

    let sent = stand_in.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].phone_number_id, "106540352242922");
    assert_eq!(sent[0].to, "+919812300045");
    assert_eq!(sent[0].body.as_deref(), Some("नमस्ते"));
    assert_eq!(sent[0].callback_data.as_deref(), Some("outbox:1"));
    assert_eq!(sent[0].bearer_token.as_deref(), Some(TOKEN));
    assert_eq!(sent[0].wamid.as_deref(), Some(wamid));
    assert_eq!(sent[0].raw["recipient_type"], json!("individual"));
}

#[tokio::test]
async fn wamids_are_unique() {
    let stand_in = GraphStandIn::start().await.unwrap();
    for _ in 0..3 {
        post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "hi")).await;
    }
    let mut wamids: Vec<String> = stand_in
        .sent()
        .into_iter()
        .filter_map(|s| s.wamid)
        .collect();
    wamids.dedup();
    assert_eq!(wamids.len(), 3);
}

#[tokio::test]
async fn missing_bearer_is_401_code_190() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let (status, answer) = post_raw(&stand_in, "1", None, text_request("91", "hi")).await;
    assert_eq!(status, 401);
    assert_error_shape(&answer, 190);

    let (status, _) = post_raw(&stand_in, "1", Some(""), text_request("91", "hi")).await;
    assert_eq!(status, 401);

    assert!(stand_in.sent().is_empty());
    let requests = stand_in.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].bearer_token, None);
    assert_eq!(requests[0].wamid, None);
}

#[tokio::test]
async fn invalid_requests_are_400_code_100() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let mut no_to = text_request("91", "hi");
    no_to.as_object_mut().unwrap().remove("to");
    let mut no_product = text_request("91", "hi");
    no_product
        .as_object_mut()
        .unwrap()
        .remove("messaging_product");
    let cases = [
        ("missing to", no_to),
        ("empty to", text_request("", "hi")),
        ("missing product", no_product),
        ("empty body", text_request("91", "")),
        (
            "missing text",
            json!({"messaging_product": "whatsapp", "to": "91", "type": "text"}),
        ),
        ("body over limit", text_request("91", &"₹".repeat(4097))),
        (
            "template without object",
            json!({"messaging_product": "whatsapp", "to": "91", "type": "template"}),
        ),
        ("not an object", json!(["whatsapp"])),
    ];
    for (case, body) in cases {
        let (status, answer) = post_raw(&stand_in, "1", Some(TOKEN), body).await;
        assert_eq!(status, 400, "{case}");
        assert_error_shape(&answer, 100);
    }
    assert!(stand_in.sent().is_empty());
    assert_eq!(stand_in.requests().len(), 8);
}

#[tokio::test]
async fn body_at_limit_is_accepted() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let (status, _) = post_raw(
        &stand_in,
        "1",
        Some(TOKEN),
        text_request("91", &"₹".repeat(4096)),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn template_send_is_accepted() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let request = json!({"messaging_product": "whatsapp", "to": "91", "type": "template",
                         "template": {"name": "test_ride_reminder", "language": {"code": "en"}}});
    let (status, _) = post_raw(&stand_in, "1", Some(TOKEN), request).await;
    assert_eq!(status, 200);
    assert_eq!(stand_in.sent()[0].body, None);
}

#[tokio::test]
async fn scripted_responses_are_consumed_in_order() {
    let stand_in = GraphStandIn::start().await.unwrap();
    stand_in.push_responses([
        ScriptedResponse::Error {
            http_status: 400,
            code: 130429,
            message: "(#130429) Rate limit hit".into(),
        },
        ScriptedResponse::Ok,
        ScriptedResponse::Raw {
            http_status: 502,
            body: "<html>Bad Gateway</html>".into(),
        },
    ]);

    let (first, answer) = post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "a")).await;
    assert_eq!(first, 400);
    assert_error_shape(&answer, 130429);
    assert_eq!(
        answer["error"]["message"],
        json!("(#130429) Rate limit hit")
    );

    let (second, _) = post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "b")).await;
    assert_eq!(second, 200);

    let response = local_client()
        .post(format!("{}/1/messages", stand_in.base_url()))
        .bearer_auth(TOKEN)
        .json(&text_request("91", "c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    assert_eq!(response.text().await.unwrap(), "<html>Bad Gateway</html>");

    let (fourth, _) = post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "d")).await;
    assert_eq!(fourth, 200);

    let bodies: Vec<String> = stand_in.sent().into_iter().filter_map(|s| s.body).collect();
    assert_eq!(bodies, ["b", "d"]);
    assert_eq!(stand_in.requests().len(), 4);
}

#[tokio::test]
async fn scripted_ok_still_validates() {
    let stand_in = GraphStandIn::start().await.unwrap();
    stand_in.push_responses([ScriptedResponse::Ok]);
    let (status, _) = post_raw(&stand_in, "1", None, text_request("91", "a")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn delay_holds_the_answer() {
    let stand_in = GraphStandIn::start().await.unwrap();
    stand_in.push_responses([ScriptedResponse::Delay(Duration::from_millis(300))]);
    let started = Instant::now();
    let (status, _) = post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "a")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn delay_then_error() {
    let stand_in = GraphStandIn::start().await.unwrap();
    stand_in.push_responses([
        ScriptedResponse::Delay(Duration::from_millis(50)),
        ScriptedResponse::Error {
            http_status: 500,
            code: 131000,
            message: "Something went wrong".into(),
        },
    ]);
    let (status, answer) = post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "a")).await;
    assert_eq!(status, 500);
    assert_error_shape(&answer, 131000);
    let (status, _) = post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "b")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn wait_for_sent_returns_on_count() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let base_url = stand_in.base_url();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for body in ["a", "b"] {
            local_client()
                .post(format!("{base_url}/1/messages"))
                .bearer_auth(TOKEN)
                .json(&text_request("91", body))
                .send()
                .await
                .unwrap();
        }
    });

    let started = Instant::now();
    let sent = stand_in.wait_for_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
    sender.await.unwrap();
}

#[tokio::test]
async fn wait_for_sent_times_out() {
    let stand_in = GraphStandIn::start().await.unwrap();
    post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "a")).await;
    let started = Instant::now();
    let sent = stand_in.wait_for_sent(2, Duration::from_millis(200)).await;
    assert_eq!(sent.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn debug_output_hides_token() {
    let stand_in = GraphStandIn::start().await.unwrap();
    post_raw(&stand_in, "1", Some(TOKEN), text_request("91", "a")).await;
    let debug = format!("{:?}", stand_in.sent());
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[tokio::test]
async fn shutdown_stops_server() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let url = format!("{}/1/messages", stand_in.base_url());
    stand_in.shutdown().await;
    let result = local_client()
        .post(url)
        .bearer_auth(TOKEN)
        .json(&text_request("91", "a"))
        .send()
        .await;
    let error = result.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}

#[tokio::test]
async fn drop_stops_server() {
    let stand_in = GraphStandIn::start().await.unwrap();
    let url = format!("{}/1/messages", stand_in.base_url());
    drop(stand_in);
    // The abort takes effect when the runtime next polls the server task.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let result = local_client()
        .post(url)
        .bearer_auth(TOKEN)
        .json(&text_request("91", "a"))
        .send()
        .await;
    assert!(result.unwrap_err().is_connect());
}
