//! [`KeyRing`]: the access-token signing keys in memory, kept in step with the store by the
//! rotation policy of [`crate::rotation`].
//!
//! Signing and the JWKS read an in-memory snapshot and never wait on the database. Rotations
//! (at start, every [`CHECK_INTERVAL`] in the background, or forced by an operator) run one at a
//! time: plan from the stored keys, write the plan in one transaction, then swap in a fresh
//! snapshot. Replicas on one database rotate one at a time too: the write checks, under the
//! store's rotation lock, that the keys are still those planned from, and a stale plan is made
//! again from what another replica wrote. A key takes over at its `activates_at` by the clock alone, so a late background run
//! never delays a pre-published key.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tracing::{error, info};

use crate::audit;
use crate::clock::Clock;
use crate::rotation::{self, KeySchedule, RotationPlan, RotationPolicy};
use crate::signing::{PublicJwk, SigningError, SigningKey};
use crate::store::{KeyStore, NewSigningKey, RotationWrite, StoreError};

/// How often the background task checks whether a key is due for rotation or deletion.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Plans made and found stale (another replica rotated first) before a rotation gives up.
const MAX_PLANS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid}")]
    Key {
        kid: String,
        #[source]
        source: SigningError,
    },
    #[error("stored signing key {0} does not match its kid")]
    KidMismatch(String),
    #[error("cannot generate a signing key")]
    Generate(#[source] SigningError),
    #[error("the key generation task failed")]
    Join(#[source] tokio::task::JoinError),
    #[error("other replicas kept changing the signing keys; {MAX_PLANS} plans went stale")]
    Contended,
}

/// The keys on record at the last rotation check, oldest activation first.
#[derive(Default)]
struct Snapshot {
    schedules: Vec<KeySchedule>,
    /// `keys[i]` is the key of `schedules[i]`.
    keys: Vec<Arc<SigningKey>>,
}

struct Inner {
    store: KeyStore,
    policy: RotationPolicy,
    snapshot: RwLock<Arc<Snapshot>>,
    rotating: tokio::sync::Mutex<()>,
}

/// The signing keys. Cheap to clone: clones share one snapshot.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Loads the stored keys and runs the scheduled rotation once, generating the first key on a
    /// new database.
    pub async fn open(
        store: KeyStore,
        policy: RotationPolicy,
        now: OffsetDateTime,
    ) -> Result<Self, KeyRingError> {
        let ring = Self {
            inner: Arc::new(Inner {
                store,
                policy,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                rotating: tokio::sync::Mutex::new(()),
            }),
        };
        ring.rotate_if_due(now).await?;
        Ok(ring)
    }

    /// Carries out [`rotation::plan_rotation`] at `now`.
    pub async fn rotate_if_due(&self, now: OffsetDateTime) -> Result<(), KeyRingError> {
        let _one_at_a_time = self.inner.rotating.lock().await;
        for _ in 0..MAX_PLANS {
            let schedules = self.reload().await?;
            let plan = rotation::plan_rotation(&schedules, now, &self.inner.policy);
            if plan.is_empty() {
                return Ok(());
            }
            let generated = match plan.generate {
                Some(activates_at) => Some(self.generate(activates_at, now).await?),
                None => None,
            };
            if self
                .write(&schedules, &plan, generated.as_ref(), None)
                .await?
                == RotationWrite::Written
            {
                self.reload().await?;
                return Ok(());
            }
        }
        Err(KeyRingError::Contended)
    }

    /// Carries out [`rotation::forced_rotation`] at `now` and returns the new key's schedule. The
    /// operator's `audit` event is recorded with the rotation, naming the new key.
    pub async fn force_rotation(
        &self,
        now: OffsetDateTime,
        audit: &audit::Event,
    ) -> Result<KeySchedule, KeyRingError> {
        let _one_at_a_time = self.inner.rotating.lock().await;
        for _ in 0..MAX_PLANS {
            let schedules = self.reload().await?;
            let plan = rotation::forced_rotation(&schedules, now, &self.inner.policy);
            let generated = self.generate(plan.generate.unwrap_or(now), now).await?;
            let audit = audit.clone().target("signing_key", &generated.schedule.kid);
            if self
                .write(&schedules, &plan, Some(&generated), Some(&audit))
                .await?
                == RotationWrite::Written
            {
                self.reload().await?;
                return Ok(generated.schedule);
            }
        }
        Err(KeyRingError::Contended)
    }

    /// The key that signs at `now`, if any.
    pub fn signer(&self, now: OffsetDateTime) -> Option<Arc<SigningKey>> {
        let snapshot = self.snapshot();
        let signer = rotation::signer(&snapshot.schedules, now)?;
        let index = snapshot
            .schedules
            .iter()
            .position(|s| std::ptr::eq(s, signer))?;
        snapshot.keys.get(index).cloned()
    }

    /// The public keys the JWKS lists at `now`, oldest activation first.
    pub fn published(&self, now: OffsetDateTime) -> Vec<PublicJwk> {
        let snapshot = self.snapshot();
        snapshot
            .schedules
            .iter()
            .zip(&snapshot.keys)
            .filter(|(schedule, _)| schedule.is_published(now))
            .map(|(_, key)| key.public_jwk().clone())
            .collect()
    }

    /// Every key on record at the last rotation check, oldest activation first.
    pub fn schedules(&self) -> Vec<KeySchedule> {
        self.snapshot().schedules.clone()
    }

    /// Runs [`KeyRing::rotate_if_due`] every [`CHECK_INTERVAL`], forever, and reloads the keys
    /// whenever another replica may have changed them ([`KeyStore::signing_keys_changed`]), so a
    /// forced rotation through one replica is signed with and published by every replica at
    /// once rather than at its next check. A failure is logged and retried at the next tick; the
    /// current keys keep signing meanwhile.
    pub async fn rotate_periodically(self, clock: Arc<dyn Clock>) {
        let mut ticks = tokio::time::interval(CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut changed = self.inner.store.signing_keys_changed();
        changed.borrow_and_update();
        let mut listening = true;
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(e) = self.rotate_if_due(clock.now()).await {
                        error!(error = %crate::http::error::ErrorChain(&e), "signing key rotation failed");
                    }
                }
                // The sender lives as long as the store: stop listening if it is gone.
                woke = changed.changed(), if listening => {
                    if woke.is_err() {
                        listening = false;
                    } else if let Err(e) = self.reload_now().await {
                        error!(error = %crate::http::error::ErrorChain(&e), "signing keys not reloaded");
                    }
                }
            }
        }
    }

    /// Reads the stored keys into a new snapshot now, between rotations.
    pub async fn reload_now(&self) -> Result<(), KeyRingError> {
        let _one_at_a_time = self.inner.rotating.lock().await;
        self.reload().await?;
        Ok(())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the stored keys into a new snapshot, parsing only keys not already in memory, and
    /// returns their schedules.
    async fn reload(&self) -> Result<Vec<KeySchedule>, KeyRingError> {
        let stored = self.inner.store.signing_keys().await?;
        let known = self.snapshot();
        let mut fresh = Snapshot::default();
        for row in stored {
            let kid = &row.schedule.kid;
            let parsed = known
                .schedules
                .iter()
                .position(|s| &s.kid == kid)
                .and_then(|i| known.keys.get(i).cloned());
            let key = match parsed {
                Some(key) => key,
                None => {
                    let key = SigningKey::from_pkcs8_der(row.schedule.alg, &row.private_der)
                        .map_err(|source| KeyRingError::Key {
                            kid: kid.clone(),
                            source,
                        })?;
                    if key.kid() != kid {
                        return Err(KeyRingError::KidMismatch(kid.clone()));
                    }
                    Arc::new(key)
                }
            };
            fresh.schedules.push(row.schedule);
            fresh.keys.push(key);
        }
        let schedules = fresh.schedules.clone();
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(schedules)
    }

    /// A new key of the policy's algorithm, generated off the async runtime (RSA takes a while).
    async fn generate(
        &self,
        activates_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Generated, KeyRingError> {
        let alg = self.inner.policy.alg;
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(alg))
            .await
            .map_err(KeyRingError::Join)?
            .map_err(KeyRingError::Generate)?;
        let private_der = key.to_pkcs8_der().map_err(KeyRingError::Generate)?;
        let public_jwk = serde_json::to_string(key.public_jwk())
            .map_err(|e| KeyRingError::Generate(SigningError::Json(e)))?;
        Ok(Generated {
            schedule: KeySchedule {
                kid: key.kid().to_owned(),
                alg,
                created_at: now,
                activates_at,
                retires_at: None,
            },
            private_der,
            public_jwk,
        })
    }

    /// Writes `plan`, made from `schedules`, with `generated` as its new key, in one
    /// transaction; nothing if another replica changed the keys since `schedules` were read.
    async fn write(
        &self,
        schedules: &[KeySchedule],
        plan: &RotationPlan,
        generated: Option<&Generated>,
        audit: Option<&audit::Event>,
    ) -> Result<RotationWrite, KeyRingError> {
        let new_key = generated.map(|g| NewSigningKey {
            schedule: &g.schedule,
            private_der: g.private_der.as_bytes(),
            public_jwk: &g.public_jwk,
        });
        let planned_from: Vec<String> = schedules.iter().map(|s| s.kid.clone()).collect();
        let written = self
            .inner
            .store
            .apply_rotation(&planned_from, new_key, &plan.retire, &plan.delete, audit)
            .await?;
        if written == RotationWrite::Stale {
            info!("signing keys changed by another replica meanwhile; planning again");
            return Ok(written);
        }
        for kid in &plan.delete {
            info!(kid, "signing key deleted");
        }
        for (kid, retires_at) in &plan.retire {
            info!(
                kid,
                retires_at = retires_at.unix_timestamp(),
                "signing key retiring"
            );
        }
        if let Some(g) = generated {
            info!(
                kid = g.schedule.kid,
                alg = g.schedule.alg.name(),
                activates_at = g.schedule.activates_at.unix_timestamp(),
                "signing key generated"
            );
        }
        Ok(written)
    }
}

/// A generated key, ready to store. The DER buffer is wiped when dropped.
struct Generated {
    schedule: KeySchedule,
    private_der: rsa::pkcs8::SecretDocument,
    public_jwk: String,
}
