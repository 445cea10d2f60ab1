//! keygate: proxy-wasm glue. Placeholder until the filter lands.
