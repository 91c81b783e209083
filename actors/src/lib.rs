//! Conversation state machine and the ractor actors that run it.
//!
//! - [`machine`]: the pure state machine, `state + event -> new state + effects`.
//! - [`keywords`]: STOP and START keyword matching.
//! - [`conversation`]: one actor per conversation, running the machine.
//! - [`supervisor`]: routes events and outbox rows, spawns and restarts actors.
//! - [`sender`]: one actor per business number, enforcing Meta's rate limits.
//! - [`backend`]: the storage and service operations the actors call.

pub mod backend;
pub mod conversation;
pub mod keywords;
pub mod machine;
pub mod sender;
pub mod supervisor;
