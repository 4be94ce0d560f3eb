//! Black-box tests: each starts a real server on port 0 and talks HTTP to it.
//! One test binary (ripgrep's layout) so the suite links once.

mod harness;
mod process;

mod auth;
mod bodies;
mod concurrency;
mod config;
mod crash;
mod groups;
mod longpoll;
mod metrics;
mod openapi;
mod overload;
mod pages;
mod protocol;
mod publish_fetch;
mod push;
mod restart;
mod retention;
mod search;
mod stats;
mod storage;
mod topics;
