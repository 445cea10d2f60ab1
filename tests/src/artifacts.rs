//! Where the things under test are found: built binaries, the filter `.wasm`, Envoy and the config
//! templates. Each can be overridden by an environment variable; the defaults are what `make build`
//! and `make envoy` produce.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `CARGO_TARGET_DIR` (relative to the workspace root), else `target/`: where the binaries are,
/// and where tests leave what a person should look at afterwards.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn existing(path: PathBuf, what: &str, how: &str) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("{what} not found at {}; {how}", path.display());
    }
    Ok(path)
}

/// `KEYGATE_SERVER_BIN`, else `target/debug/keygate-server`.
pub fn keygate_server() -> Result<PathBuf> {
    let path = std::env::var_os("KEYGATE_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/keygate-server"));
    existing(
        path,
        "keygate-server",
        "run `make build` (or set KEYGATE_SERVER_BIN)",
    )
}

/// `KEYGATE_WASM`, else `target/wasm32-wasip1/release/keygate.wasm`.
pub fn filter_wasm() -> Result<PathBuf> {
    let path = std::env::var_os("KEYGATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip1/release/keygate.wasm"));
    existing(
        path,
        "keygate.wasm",
        "run `make wasm` (or set KEYGATE_WASM)",
    )
}

/// `PANIC_FILTER_WASM`, else `target/wasm32-wasip1/release/panic_filter.wasm`: the test-only
/// filter of `tests/panic-filter`.
pub fn panic_filter_wasm() -> Result<PathBuf> {
    let path = std::env::var_os("PANIC_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip1/release/panic_filter.wasm"));
    existing(
        path,
        "panic_filter.wasm",
        "run `make build` (or set PANIC_FILTER_WASM)",
    )
}

/// `ENVOY_BIN`, else `.venv/bin/envoy`.
pub fn envoy() -> Result<PathBuf> {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    existing(path, "envoy", "run `make envoy` (or set ENVOY_BIN)")
}

/// The Envoy config template the end-to-end tests use.
pub fn e2e_template() -> PathBuf {
    workspace_root().join("envoy/e2e.yaml")
}

/// One Wasm filter in front of the upstream, for the tests of Envoy's Wasm `failure_policy`.
pub fn wasm_failure_template() -> PathBuf {
    workspace_root().join("tests/fixtures/wasm-failure.yaml")
}

/// An Envoy config with no filter at all: for testing the harness on its own.
pub fn passthrough_template() -> PathBuf {
    workspace_root().join("tests/fixtures/passthrough.yaml")
}

/// `node`: `NODE_BIN`, else the one on `PATH`.
pub fn node() -> PathBuf {
    std::env::var_os("NODE_BIN").map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

/// The browser test of the web console, once Chromium (`CHROMIUM_BIN`, else `/usr/bin/chromium`)
/// and its `node_modules` (playwright-core) are there: `scripts/ensure-chromium.sh` installs both.
pub fn console_test_script() -> Result<PathBuf> {
    let dir = workspace_root().join("tests/console");
    existing(
        std::env::var_os("CHROMIUM_BIN")
            .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from),
        "Chromium",
        "run `make chromium` (or set CHROMIUM_BIN)",
    )?;
    existing(
        dir.join("node_modules/playwright-core/package.json"),
        "playwright-core",
        "run `make chromium` (scripts/ensure-chromium.sh)",
    )?;
    Ok(dir.join("console.test.mjs"))
}
