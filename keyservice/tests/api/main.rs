//! API tests: the real service over real HTTP, one temporary database per test, time moved by a
//! manual clock. See `helpers.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod auth;
mod changes;
mod check;
mod clients;
mod console;
mod discovery;
mod errors;
mod full_disk;
mod health;
mod helpers;
mod keys;
mod limits;
mod lookup;
mod metrics;
mod names;
mod openapi;
mod replicas;
mod roles;
mod storage;
mod tenant_admins;
mod tokens;
mod usage;
