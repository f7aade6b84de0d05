//! Integration tests: the built application over HTTP against the Workfront simulator.

mod admin;
mod cli;
mod harness;
mod lifecycle;
mod openapi;
mod operator;
mod pipeline;
mod webhooks;
