//! Integration tests against real PostgreSQL and Redis, with local stand-ins for Meta's Graph
//! API and an OpenAI-compatible LLM on 127.0.0.1.

mod support;

mod api;
mod api_auth;
mod conversation;
mod delivery;
mod hostile;
mod isolation;
mod recovery;
mod webhook;
