//! velochat: a WhatsApp conversation engine for vehicle dealerships.
//!
//! A message's path through the modules:
//! - [`http`]: Meta's webhook checks the signature and hands the body to [`whatsapp`] parsing,
//!   then [`store`] commits every item in PostgreSQL before the 200.
//! - [`dispatch`]: the stored events go through Redis Streams, one stream per virtual shard.
//! - [`engine`] runs the supervisor and actors of the `velochat-actors` crate, with
//!   [`backend`] as their storage and services: [`llm`] writes replies, [`whatsapp`] sends them.
//! - [`recovery`]: stored work that was never finished is handed out again.
//! - [`cli`], [`tenant_cli`] and [`demo`]: the command line; [`graph_stub`] is the local
//!   stand-in for Meta's Graph API used by the demo, tests and load generator.

pub mod api;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod dispatch;
pub mod engine;
pub mod graph_stub;
pub mod http;
pub mod llm;
pub mod recovery;
pub mod secret;
pub mod simulate;
pub mod store;
pub mod tenant_cli;
pub mod user_cli;
pub mod whatsapp;
