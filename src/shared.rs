//! Read-change-write of one Envoy shared-data value, safe against the other workers: the one
//! compare-and-swap loop of the filter (cache buckets, JWKS schedules, the circuit breaker).

use crate::host;

/// Writes lost to another worker before giving up. Every caller's state is advisory (a lost
/// cache write costs a lookup, a lost schedule change a fetch later), so a bound is safe.
const CAS_ATTEMPTS: usize = 3;

/// Reads `key`, asks `change` for its new bytes (`None`: leave it as it is), and writes them
/// unless another worker wrote in between, in which case it starts over. Returns whether a
/// change was written. A host failure is logged and counts as not written.
pub fn update(key: &str, mut change: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = match host::shared_get(key) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("shared data {key}: {e}");
                return false;
            }
        };
        let Some(bytes) = change(current.as_deref()) else {
            return false;
        };
        match host::shared_set(key, &bytes, cas) {
            Ok(()) => return true,
            Err(e) if e.is_cas_mismatch() => continue,
            Err(e) => {
                log::warn!("shared data {key}: {e}");
                return false;
            }
        }
    }
    false
}
