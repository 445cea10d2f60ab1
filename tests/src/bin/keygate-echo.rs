//! `keygate-echo [ADDR]`: the demo upstream. Answers every request with 200 and JSON of its
//! method, path and headers. ADDR defaults to `$KEYGATE_ECHO_LISTEN`, then `127.0.0.1:8081`.

use anyhow::Context;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("KEYGATE_ECHO_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!("keygate-echo listening on {}", listener.local_addr()?);
    keygate_e2e::echo::serve(listener, None).await?;
    Ok(())
}
