//! Stage times of replies, from the timestamps the engine stores, and the outbox's final
//! statuses.
//!
//! All timestamps come from the PostgreSQL server's clock, and each is `now()` of the
//! transaction that wrote it, which is that transaction's start. A stage can therefore look a
//! few milliseconds longer or shorter than it was.

use std::time::Duration;

use sqlx::PgPool;

use crate::stats::Percentiles;

/// Milliseconds of one replied message from stored to event processed, from stored to reply
/// queued, from reply queued to the sender claiming it, and from that claim to sent.
type StageRow = (f64, f64, f64, f64);

/// Prints the stage times of the replies to messages whose WhatsApp id starts with
/// `wamid_prefix`.
pub async fn print_stages(pool: &PgPool, wamid_prefix: &str) {
    print_reply_coverage(pool, wamid_prefix).await;
    let rows: Vec<StageRow> = match sqlx::query_as(
        "SELECT extract(epoch FROM e.processed_at - e.created_at)::float8 * 1000,
                extract(epoch FROM o.created_at - m.received_at)::float8 * 1000,
                extract(epoch FROM o.attempt_started_at - o.created_at)::float8 * 1000,
                extract(epoch FROM o.sent_at - o.attempt_started_at)::float8 * 1000
         FROM messages m
         JOIN inbound_events e ON e.message_id = m.id
         JOIN outbox o ON o.reply_to = m.id AND o.part = 0
         WHERE m.wamid LIKE $1 || '%'
           AND e.processed_at IS NOT NULL
           AND o.sent_at IS NOT NULL
           AND o.attempt_started_at IS NOT NULL",
    )
    .bind(wamid_prefix)
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("warning: reading the stage times failed: {error}");
            return;
        }
    };
    if rows.is_empty() {
        println!("  stage times:           no sent replies found in the database");
        return;
    }
    let column = |pick: fn(&StageRow) -> f64| -> Option<Percentiles> {
        let samples = rows
            .iter()
            .map(|row| Duration::from_secs_f64(pick(row).max(0.0) / 1000.0))
            .collect();
        Percentiles::of(samples)
    };
    println!("  stage times from database timestamps, per replied message:");
    let stages = [
        ("stored -> event processed", column(|row| row.0)),
        ("stored -> reply queued", column(|row| row.1)),
        ("reply queued -> send claimed", column(|row| row.2)),
        ("send claimed -> sent", column(|row| row.3)),
    ];
    for (name, percentiles) in stages {
        if let Some(percentiles) = percentiles {
            println!("    {name:<29} {}", percentiles.line());
        }
    }
}

/// Prints how many of the messages were stored and how many got a reply of their own.
async fn print_reply_coverage(pool: &PgPool, wamid_prefix: &str) {
    let counts: Result<(i64, i64), _> = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.reply_to = m.id))
         FROM messages m
         WHERE m.wamid LIKE $1 || '%'",
    )
    .bind(wamid_prefix)
    .fetch_one(pool)
    .await;
    match counts {
        Ok((stored, replied)) => {
            println!("  messages stored:       {stored}, with a reply of their own: {replied}");
            if replied < stored {
                println!(
                    "                         (a message that arrives while a reply is still \
                     owed supersedes that reply, so only the newest message of a burst gets one)"
                );
            }
        }
        Err(error) => eprintln!("warning: counting the stored messages failed: {error}"),
    }
}

/// Prints how many outbox rows ended in each status, and the error codes of failed rows.
pub async fn print_outbox(pool: &PgPool) {
    let statuses: Vec<(String, i64)> =
        match sqlx::query_as("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await
        {
            Ok(statuses) => statuses,
            Err(error) => {
                eprintln!("warning: reading the outbox statuses failed: {error}");
                return;
            }
        };
    let listed: Vec<String> = statuses
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect();
    println!("outbox rows by status:   {}", listed.join(", "));

    let failures: Vec<(Option<i64>, Option<String>, i64)> = match sqlx::query_as(
        "SELECT error_code, min(error_message), count(*) FROM outbox
         WHERE status = 'failed' OR attempts > 1
         GROUP BY error_code ORDER BY count(*) DESC",
    )
    .fetch_all(pool)
    .await
    {
        Ok(failures) => failures,
        Err(error) => {
            eprintln!("warning: reading the outbox failures failed: {error}");
            return;
        }
    };
    for (code, message, count) in failures {
        println!(
            "  failed or retried:     {count} rows, error code {}, {}",
            code.map_or("none".to_string(), |code| code.to_string()),
            message.unwrap_or_default()
        );
    }
}
