//! Integration tests: the built application over HTTP against the Workfront simulator.

mod admin;
mod cli;
mod console;
mod credentials;
mod durability;
mod edges;
mod harness;
mod hr_apis;
mod leaks;
mod lifecycle;
mod openapi;
mod operator;
mod pipeline;
mod processes;
mod reconcile;
mod serving;
mod vendors;
mod wait;
mod webhooks;
