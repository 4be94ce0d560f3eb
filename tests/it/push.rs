//! Push delivery, black-box: WebSocket subscriptions (plain and consumer-group), publish
//! and auth over WebSocket, slow consumers, and Server-Sent Events.

pub mod client;

mod frames;
mod sse;
mod ws;
mod ws_groups;
