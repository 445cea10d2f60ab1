//! End-to-end harness for keygate: the real `keygate.wasm` inside a real Envoy, in front of a real
//! upstream, talking to the real `keygate-server` binary.
//!
//! A test starts a whole [`Stack`] of its own (own ports, own database, own Envoy), so tests run in
//! parallel; everything is killed when the `Stack` is dropped.
//!
//! # Layout
//!
//! - [`stack`]: [`Stack`], one key service + echo upstream + Envoy (or several Envoys and key
//!   service replicas), and the client helpers tests use
//! - [`envoy`]: starting, waiting for and validating an Envoy process; admin stats
//! - [`keyservice`]: the `keygate-server` process, its admin API and its token endpoint
//! - [`idp`]: an external identity provider stand-in (a JWKS server and the keys that sign its
//!   tokens)
//! - [`echo`]: the upstream that answers with what it received (also the `keygate-echo` binary)
//! - [`template`]: the `${NAME}` placeholders of the Envoy configs under `envoy/`
//! - [`artifacts`]: where the built binaries, the `.wasm` and Envoy are found
//! - [`raw_http`]: a byte-exact HTTP/1.1 client, for paths other clients would normalise
//! - [`raw_h2`]: a byte-exact HTTP/2 cleartext client, for bytes HTTP/2 libraries refuse to send
//! - [`upstream_paths`]: how common servers read a path they receive, and which rule that hits

pub mod artifacts;
pub mod echo;
pub mod envoy;
pub mod idp;
pub mod keyservice;
pub mod raw_h2;
pub mod raw_http;
pub mod stack;
pub mod template;
pub mod upstream_paths;

pub use echo::{spawn_echo, EchoHandle, EchoedRequest};
pub use envoy::Envoy;
pub use idp::{Idp, IdpKey};
pub use keyservice::KeyService;
pub use raw_http::Reply;
pub use stack::{
    base_filter_config, idp_provider, jwt_filter_config, keyservice_provider, Listener, Routing,
    Stack, StackOptions, Started,
};
