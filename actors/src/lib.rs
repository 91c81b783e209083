//! Conversation state machine and the ractor actors that run it.
