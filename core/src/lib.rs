//! keygate-core: the decisions keygate makes, with no I/O and no proxy-wasm.
//!
//! The filter (root crate) and the key service (`keyservice/`) both depend on this crate, so the
//! key format and the wire protocol are defined once.
//!
//! # Layout
//! - [`key`]: the API key format and [`key::KeyHash`].
//! - [`wire`]: lookup and usage messages between filter and key service.

pub mod key;
pub mod wire;
