//! Carrying out a verdict on a stream: forward with identity, forward unverified, or answer.
//! Nothing here decides; `keygate_core::decision` did.

use keygate_core::credential::Strip;
use keygate_core::decision::{Denial, DenyReason, Verdict};
use keygate_core::lookups::Waiter;
use proxy_wasm::types::Action;

use crate::host::{self, HostResult};
use crate::worker::Worker;

/// Carries out a verdict on the current stream. `Continue` means: let it go upstream.
pub fn carry_out(worker: &Worker, verdict: Verdict, strip: &Strip, now: u64) -> HostResult<Action> {
    match verdict {
        Verdict::Allow(grant) => {
            apply_strip(strip)?;
            // Every header under the identity prefix was removed when the request arrived.
            for (name, value) in &grant.identity_headers {
                host::add_request_header(name, value)?;
            }
            worker.metrics.allowed();
            if let Some(id) = grant.key_id.as_deref() {
                if worker.config.usage_interval.is_some() {
                    worker.usage.borrow_mut().record(id, now);
                }
            }
            Ok(Action::Continue)
        }
        Verdict::AllowUnverified => {
            apply_strip(strip)?;
            worker.metrics.inc(worker.metrics.failure_open);
            Ok(Action::Continue)
        }
        Verdict::Deny(denial) => deny(worker, &denial),
    }
}

/// Finishes a request that was paused: carry out the verdict, then resume it if it goes upstream.
pub fn finish_paused(worker: &Worker, verdict: Verdict, strip: &Strip, now: u64) {
    let result = carry_out(worker, verdict, strip, now).and_then(|action| match action {
        Action::Continue => host::resume_request(),
        _ => Ok(()),
    });
    if let Err(e) = result {
        log::error!("{e}; answering 503");
        fail_closed();
    }
}

/// Finishes paused requests of other streams, each with its verdict. A request whose stream
/// went away is skipped. The caller makes its own stream current again afterwards.
pub fn finish_waiters(
    worker: &Worker,
    waiters: Vec<Waiter>,
    verdict_for: impl Fn(&Waiter) -> Verdict,
    now: u64,
) {
    for w in waiters {
        if host::set_effective_context(w.context_id).is_ok() {
            finish_paused(worker, verdict_for(&w), &w.strip, now);
        }
    }
}

pub fn deny(worker: &Worker, denial: &Denial) -> HostResult<Action> {
    worker.metrics.denied(denial.reason);
    host::send_response(denial.status(), &denial.headers(), &denial.body())?;
    Ok(Action::Pause)
}

pub fn apply_strip(strip: &Strip) -> HostResult<()> {
    for name in &strip.headers {
        host::remove_request_header(name.as_bytes())?;
    }
    if let Some(path) = &strip.path {
        host::set_request_header(":path", path)?;
    }
    Ok(())
}

/// Last resort when the host refuses a call mid-request: answer 503 and never forward. If even
/// that fails, the request stays paused until Envoy's stream timeout; it is never let through.
pub fn fail_closed() -> Action {
    let denial = Denial::new(DenyReason::Unavailable);
    if let Err(e) = host::send_response(denial.status(), &denial.headers(), &denial.body()) {
        log::error!("{e}");
    }
    Action::Pause
}
