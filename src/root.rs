//! The root context: compiles the configuration once per VM; on each tick sends again the
//! lookups whose sender went away, answers those never answered, keeps JWKS fresh, reads the
//! revocation feed (and drops what it says changed), and sends the batched usage counts.

use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;
use std::time::Duration;

use keygate_core::config::FilterConfig;
use keygate_core::decision;
use keygate_core::usage::ReportFate;
use keygate_core::wire::UsageReport;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::act;
use crate::host;
use crate::http::{RequestFilter, Unconfigured};
use crate::lookup;
use crate::metrics::Metrics;
use crate::worker::Worker;

const TICK: Duration = Duration::from_secs(1);
/// With remote JWKS providers the tick is faster, so requests waiting for keys resume promptly.
const FAST_TICK: Duration = Duration::from_millis(200);
/// With the revocation feed on, the slowest tick: every worker drops a revoked key's cached
/// answer within one tick of the poller learning of it.
const FEED_TICK: Duration = Duration::from_millis(250);

/// Values taken off the batch queue per `on_queue_ready`.
const MAX_DEQUEUED_PER_WAKE: usize = 64;

pub struct FilterRoot {
    context_id: u32,
    worker: Option<Rc<Worker>>,
    /// Unix seconds of the last usage report sent.
    last_report: u64,
    /// The report in flight and its callout token, kept to put back if it fails.
    report_in_flight: Option<(u32, UsageReport)>,
}

impl FilterRoot {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            worker: None,
            last_report: 0,
            report_in_flight: None,
        }
    }

    /// Makes host calls act on this root context again, after finishing other streams.
    fn restore_context(&self) {
        if let Err(e) = host::set_effective_context(self.context_id) {
            log::warn!("{e}");
        }
    }

    /// Sends the lookups queued for a batch, and answers "unavailable" those that cannot go.
    fn send_batches(&self, worker: &Worker, now: u64) {
        let unsent = lookup::send_batches(worker, self.context_id, now);
        if unsent.is_empty() {
            return;
        }
        let unavailable = decision::unavailable(&worker.config);
        act::finish_waiters(worker, unsent, |_| unavailable.clone(), now);
        self.restore_context();
    }

    /// Lookups whose sender's stream ended are sent again from here, for the requests still
    /// waiting on them; lookups never answered are answered "unavailable".
    fn tend_lookups(&self, worker: &Worker, now: u64) {
        let unavailable = decision::unavailable(&worker.config);
        let mut unanswered = worker.lookups.borrow_mut().expire(now);
        // A wake that never came (the host refused the enqueue) still sends within a tick.
        unanswered.extend(lookup::send_batches(worker, self.context_id, now));
        let orphans = worker.lookups.borrow_mut().take_orphans();
        for hash in orphans {
            if let Err(waiters) = lookup::send(worker, &hash, self.context_id, now) {
                unanswered.extend(waiters);
            }
        }
        if unanswered.is_empty() {
            return;
        }
        act::finish_waiters(worker, unanswered, |_| unavailable.clone(), now);
        self.restore_context();
    }

    fn report_usage(&mut self, worker: &Worker, interval: Duration, now: u64) {
        if self.report_in_flight.is_some() {
            return;
        }
        let report = {
            let mut usage = worker.usage.borrow_mut();
            if !usage.report_due(self.last_report, interval.as_secs(), now) {
                return;
            }
            usage.drain()
        };
        self.last_report = now;
        let body = serde_json::to_vec(&report).unwrap_or_default();
        let sent = worker.post_to_key_service(&worker.config.key_service.usage_path, &body);
        match sent {
            Ok(token) => self.report_in_flight = Some((token, report)),
            Err(e) => {
                log::warn!("usage report not sent: {e}");
                worker.metrics.inc(worker.metrics.usage_report_failure);
                worker.usage.borrow_mut().restore(report);
            }
        }
    }

    fn on_report_answer(&self, worker: &Worker, report: UsageReport) {
        let status = host::call_response_status().ok().flatten();
        match ReportFate::of(status) {
            ReportFate::Delivered => {}
            ReportFate::Dropped => {
                log::warn!(
                    "usage report of {} keys refused: status {status:?}; dropped",
                    report.entries.len()
                );
                worker.metrics.inc(worker.metrics.usage_report_failure);
            }
            ReportFate::Retry => {
                log::warn!("usage report failed: status {status:?}; will retry");
                worker.metrics.inc(worker.metrics.usage_report_failure);
                worker.usage.borrow_mut().restore(report);
            }
        }
    }
}

/// A shared queue's name is global to the Envoy process and the last VM to register a name gets
/// its wakes, so each worker's VM registers a name of its own.
fn batch_queue_name(context_id: u32) -> String {
    format!(
        "keygate.lookup_batch.{:016x}",
        RandomState::new().hash_one(context_id)
    )
}

impl Context for FilterRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let now = match host::now_secs() {
            Ok(now) => now,
            Err(e) => return log::warn!("{e}"),
        };
        if worker.take_feed_poll(token) {
            match host::now_millis() {
                Ok(now_ms) => worker.on_feed_answer(body, now_ms),
                Err(e) => log::warn!("{e}"),
            }
        } else if let Some(index) = worker.fetch_owner(token) {
            worker.on_fetch_response(index, body, now);
            worker.settle_parked(now);
            self.restore_context();
        } else if lookup::on_answer(&worker, token, self.context_id, body, now)
            != lookup::Answered::NotALookup
        {
            self.restore_context();
        } else if let Some((_, report)) = self.report_in_flight.take_if(|(t, _)| *t == token) {
            self.on_report_answer(&worker, report);
        }
    }
}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration() {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                log::error!("cannot read configuration: {e}");
                return false;
            }
        };
        let config = match FilterConfig::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log::error!("invalid configuration: {e}");
                return false;
            }
        };
        let metrics = match Metrics::define() {
            Ok(m) => m,
            Err(e) => {
                log::error!("cannot define metrics: {e}");
                return false;
            }
        };
        let remote_jwks = config.jwt.providers.iter().any(|p| p.remote().is_some());
        let mut tick = if remote_jwks { FAST_TICK } else { TICK };
        if let Some(r) = &config.revocation {
            tick = tick.min(FEED_TICK).min(r.poll_interval);
        }
        if let Err(e) = host::set_tick_period(tick) {
            log::error!("cannot set tick period: {e}");
            return false;
        }
        log::info!(
            "configured: {} route rules, cache {} entries, key service cluster {}, fingerprint {}",
            config.routes.len(),
            config.cache.max_entries,
            config.key_service.cluster,
            config.fingerprint
        );
        let batch_queue = match host::register_queue(&batch_queue_name(self.context_id)) {
            Ok(id) => Some(id),
            Err(e) => {
                log::warn!("lookups will not be batched: {e}");
                None
            }
        };
        let worker = Rc::new(Worker::new(config, metrics, batch_queue));
        // Before any request: the key cache's table is the feed's current epoch.
        if let Ok(now) = host::now_secs() {
            worker.set_clock(now);
            worker.sync_feed(now);
        }
        self.worker = Some(worker);
        true
    }

    fn on_tick(&mut self) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        worker.metrics.flush();
        let now = match host::now_secs() {
            Ok(n) => n,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        };
        worker.set_clock(now);
        self.tend_lookups(&worker, now);
        if worker.config.revocation.is_some() {
            worker.sync_feed(now);
            match host::now_millis() {
                Ok(now_ms) => worker.poll_feed_if_due(now_ms),
                Err(e) => log::warn!("{e}"),
            }
        }
        if worker.config.jwt.enabled() {
            worker.start_due_fetches(now);
            worker.settle_parked(now);
            self.restore_context();
        }
        if let Some(interval) = worker.config.usage_interval {
            self.report_usage(&worker, interval, now);
        }
    }

    /// A request queued a lookup for the next batch and woke this root: the worker's other
    /// ready events of this event-loop turn have run, so their misses go out together.
    fn on_queue_ready(&mut self, queue_id: u32) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        if worker.batch_queue != Some(queue_id) {
            return;
        }
        // Each wake put one value on the queue; none is worth keeping. Bounded, whatever else
        // might enqueue: values left over are taken at the next call.
        for _ in 0..MAX_DEQUEUED_PER_WAKE {
            if !matches!(host::dequeue(queue_id), Ok(Some(_))) {
                break;
            }
        }
        match host::now_secs() {
            Ok(now) => self.send_batches(&worker, now),
            Err(e) => log::warn!("{e}"),
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.worker {
            Some(worker) => Box::new(RequestFilter::new(Rc::clone(worker), context_id)),
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
