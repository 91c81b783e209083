//! WhatsApp Cloud API: webhook signatures and payloads, the Graph API send client, and
//! splitting of long texts.

pub mod client;
pub mod payload;
pub mod signature;
pub mod split;

pub use client::{is_retriable_code, GraphClient, SendError, SentMessage, DEFAULT_GRAPH_API_BASE};
pub use payload::{
    parse_webhook, ChangeValue, Contact, ErrorDetail, InboundMessage, Media, MessageKind,
    PayloadError, SkippedItem, Status, StatusKind, UserPreference,
};
pub use signature::{sign, verify_signature, SignatureError};
pub use split::split_text;
