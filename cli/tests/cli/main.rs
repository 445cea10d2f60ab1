//! The `keygate` binary, run as a subprocess, against the real key service (in-process, port 0,
//! temporary SQLite). See `helpers.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod access;
mod audit;
mod clients;
mod errors;
mod keys;
