//! The configuration snapshot: every tenant's offers, campaigns, buyers and contracts, compiled
//! once (schemas, filters, schedules, caps) and held in memory, so that a ping reads no
//! configuration from the database.
//!
//! A snapshot is immutable; a change builds a new one and swaps it in atomically (`ArcSwap`),
//! so requests never wait on a reload and never see half of one. Changes arrive through the
//! `gavel_config` NOTIFY channel (admin API and SQL edits alike), reloading only the tenant
//! that changed; a lost listener connection, and a timer, trigger a full reload.
//!
//! Read-your-writes: an admin write, once committed, asks for a reload of its tenant and waits
//! until a snapshot that includes it is published ([`ConfigStore::written`]). Every reload is
//! numbered when it begins, before its read transaction starts; a write waits for a reload
//! numbered after the one that had begun when it committed. Writes arriving together share one
//! reload, so they never queue behind a reload each.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use chrono_tz::Tz;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{FromRow, PgPool};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::admin;
use super::admin::rows::{
    BuyerRow, Buyers, CampaignRow, Campaigns, ContractRow, Contracts, OfferRow, Offers, PartnerRow,
    Partners, SuppressionListRow, SuppressionLists, status,
};
use crate::auction::{
    CascadeRules, CompiledCaps, CompiledContract, CompiledSchema, ConfigError, ContractConfig,
    OfferRules, PayoutRule, Status,
};
use crate::buyers::breaker::BreakerSettings;
use crate::buyers::delivery::DeliveryConfig;
use crate::money::Money;

/// The NOTIFY channel the configuration triggers send on.
pub const CONFIG_CHANNEL: &str = "gavel_config";
/// A full reload this often, in case a notification was missed for any reason.
const FULL_RELOAD_EVERY: Duration = Duration::from_secs(60);
/// Database look-ups of admin keys not in the snapshot: 5 a second, a burst of 5.
const KEY_LOOKUPS: Quota = Quota::per_second(NonZeroU32::new(5).unwrap());
/// How long such a look-up may take before the key is refused.
const KEY_LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);
/// How long such a look-up waits for a connection when every one is busy.
const BUSY_POOL_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct BuyerConfig {
    pub id: Uuid,
    pub status: Status,
    pub credit_limit: Money,
    /// Caps over all the buyer's contracts (docs/revenue-recovery.md §4).
    pub caps: CompiledCaps,
}

/// A contract taking part in auctions.
#[derive(Debug)]
pub struct Contract {
    /// Status, pricing, filters, schedule and caps, compiled for the auction.
    pub compiled: CompiledContract,
    pub name: String,
    pub dedup_days: u32,
    pub delivery: DeliveryConfig,
    /// The `weighted` strategy's weight (0–1000).
    pub weight: u32,
    /// The win and loss notices' URL templates, when it has either.
    pub notices: Option<Arc<crate::notices::NoticeUrls>>,
    /// The active suppression lists the contract is checked against: its offer's and its own
    /// (docs/suppression.md).
    pub suppression_lists: Vec<Uuid>,
}

impl Contract {
    /// The first of the contract's suppression lists among `listed` (those holding the
    /// consumer).
    pub fn suppressed_by(&self, listed: &[Uuid]) -> Option<Uuid> {
        self.suppression_lists
            .iter()
            .find(|list| listed.contains(list))
            .copied()
    }
}

#[derive(Debug)]
pub struct OfferConfig {
    pub id: Uuid,
    pub name: String,
    pub status: Status,
    pub rules: OfferRules,
    pub ping_ttl_seconds: u32,
    /// The deadline of a ping that sends none (`max_wait_ms`).
    pub max_wait_ms: Option<u32>,
    pub schema: CompiledSchema,
    /// The contracts that take part in auctions: all but archived ones.
    pub contracts: Vec<Arc<Contract>>,
    /// The cascade at post (docs/revenue-recovery.md §1).
    pub cascade: CascadeRules,
    /// Every active suppression list a consumer of the offer is looked up in: the offer's
    /// and its contracts' (docs/suppression.md). Shared: each ping's state read takes a copy.
    pub suppression_lists: Arc<[Uuid]>,
    /// Consent verification at post, in order (docs/verification.md).
    pub verification: Arc<[crate::verification::Step]>,
}

#[derive(Debug)]
pub struct CampaignConfig {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub offer_id: Uuid,
    pub status: Status,
    pub payout: PayoutRule,
    pub min_payout: Money,
    pub ping_rate_per_second: Option<u32>,
}

#[derive(Debug)]
pub struct TenantConfig {
    pub id: Uuid,
    pub timezone: Tz,
    pub partners: HashMap<Uuid, Status>,
    /// Each partner's name, as request templates show it (`partner.name`).
    pub partner_names: HashMap<Uuid, String>,
    pub buyers: HashMap<Uuid, BuyerConfig>,
    pub offers: HashMap<Uuid, Arc<OfferConfig>>,
    pub campaigns: HashMap<Uuid, Arc<CampaignConfig>>,
    posting_keys: Vec<([u8; 32], Uuid)>,
    /// The hashes of the tenant's admin keys that are not revoked.
    admin_keys: Vec<[u8; 32]>,
    /// The failing-buyer breaker's settings (`buyers::breaker`).
    pub breaker: BreakerSettings,
    /// The names of the tenant's suppression lists (the explain names a `suppressed` decline's).
    pub suppression_list_names: HashMap<Uuid, String>,
}

/// Everything a ping needs to know about its campaign, resolved from the posting key.
#[derive(Clone)]
pub struct CampaignContext {
    pub tenant: Arc<TenantConfig>,
    pub campaign: Arc<CampaignConfig>,
    pub offer: Arc<OfferConfig>,
}

impl CampaignContext {
    /// The campaign, its partner and its offer are all active.
    pub fn is_active(&self) -> bool {
        self.campaign.status == Status::Active
            && self.offer.status == Status::Active
            && self.tenant.partners.get(&self.campaign.partner_id) == Some(&Status::Active)
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    tenants: HashMap<Uuid, Arc<TenantConfig>>,
    posting_keys: HashMap<[u8; 32], (Uuid, Uuid)>,
    admin_keys: HashMap<[u8; 32], Uuid>,
}

impl Snapshot {
    /// The campaign whose posting key hashes to `key_hash`.
    pub fn campaign_by_key(&self, key_hash: &[u8; 32]) -> Option<CampaignContext> {
        let (tenant_id, campaign_id) = self.posting_keys.get(key_hash)?;
        let tenant = self.tenants.get(tenant_id)?;
        let campaign = tenant.campaigns.get(campaign_id)?;
        let offer = tenant.offers.get(&campaign.offer_id)?;
        Some(CampaignContext {
            tenant: Arc::clone(tenant),
            campaign: Arc::clone(campaign),
            offer: Arc::clone(offer),
        })
    }

    /// The tenant whose admin key hashes to `key_hash`.
    pub fn tenant_by_admin_key(&self, key_hash: &[u8; 32]) -> Option<Uuid> {
        self.admin_keys.get(key_hash).copied()
    }

    pub fn tenant(&self, tenant_id: Uuid) -> Option<&Arc<TenantConfig>> {
        self.tenants.get(&tenant_id)
    }

    /// A copy with one tenant replaced (or removed when `None`).
    fn with_tenant(&self, tenant_id: Uuid, tenant: Option<TenantConfig>) -> Snapshot {
        let mut tenants = self.tenants.clone();
        let mut posting_keys = self.posting_keys.clone();
        let mut admin_keys = self.admin_keys.clone();
        posting_keys.retain(|_, (owner, _)| *owner != tenant_id);
        admin_keys.retain(|_, owner| *owner != tenant_id);
        tenants.remove(&tenant_id);
        if let Some(tenant) = tenant {
            for (hash, campaign) in &tenant.posting_keys {
                posting_keys.insert(*hash, (tenant_id, *campaign));
            }
            for hash in &tenant.admin_keys {
                admin_keys.insert(*hash, tenant_id);
            }
            tenants.insert(tenant_id, Arc::new(tenant));
        }
        Snapshot {
            tenants,
            posting_keys,
            admin_keys,
        }
    }
}

/// The numbers of the reloads a published snapshot includes (see [`ConfigStore::written`]).
#[derive(Debug, Default)]
struct Loaded {
    /// The last full reload.
    all: u64,
    /// The last reload of each tenant.
    tenants: HashMap<Uuid, u64>,
}

impl Loaded {
    fn covers(&self, tenant_id: Uuid, reload: u64) -> bool {
        self.all
            .max(self.tenants.get(&tenant_id).copied().unwrap_or(0))
            >= reload
    }
}

/// The live configuration: the current snapshot, replaced whole on every reload.
pub struct ConfigStore {
    db: PgPool,
    current: ArcSwap<Snapshot>,
    /// The number of the last reload begun (before its read transaction started).
    begun: AtomicU64,
    /// What the current snapshot includes, published after each swap.
    loaded: watch::Sender<Loaded>,
    /// Tenants whose writes wait for a reload, and the listener task's wake-up.
    requested: Mutex<HashSet<Uuid>>,
    wake: Notify,
    /// Admin keys not in the snapshot looked up in the database, at most this often.
    key_lookups: DefaultDirectRateLimiter,
}

impl ConfigStore {
    /// Loads every tenant's configuration.
    pub async fn load(db: PgPool) -> Result<Arc<Self>> {
        let snapshot = load_all(&db).await?;
        Ok(Arc::new(Self {
            db,
            current: ArcSwap::from_pointee(snapshot),
            begun: AtomicU64::new(0),
            loaded: watch::Sender::new(Loaded::default()),
            requested: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            key_lookups: RateLimiter::direct(KEY_LOOKUPS),
        }))
    }

    /// The current snapshot (a cheap pointer copy).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The tenant of an admin key, from the snapshot. A key not in it is looked up in the
    /// database only for the moments between its creation and its notification (a key made
    /// by `gavel tenant create` and used at once), at most a few times a second per process
    /// and for a short time each, on an idle connection, a new one while the pool has room, or
    /// one freed within a moment (a lookup never queues behind the requests): a flood of wrong
    /// keys costs the database little, and hardly waits for it; such a key is refused (401).
    /// A lookup the database cannot answer now (down, or slower than the lookup's time) is an
    /// error: the key may be valid, so it is "retry later" (503), not "unknown" (401).
    pub async fn admin_tenant(&self, key_hash: &[u8; 32]) -> Result<Option<Uuid>, sqlx::Error> {
        if let Some(tenant) = self.current.load().tenant_by_admin_key(key_hash) {
            return Ok(Some(tenant));
        }
        if self.key_lookups.check().is_err() {
            return Ok(None);
        }
        crate::meters::admin_key_lookup();
        let lookup = async {
            // An idle connection, or a new one while the pool has room; never a wait for one
            // that requests are using.
            let mut connection = match self.db.try_acquire() {
                Some(connection) => connection,
                None if self.db.size() < self.db.options().get_max_connections() => {
                    self.db.acquire().await?
                }
                // Every connection busy, often with a reload for a few milliseconds (the new
                // key's own): a moment's wait, so that a valid key is not called unknown, but
                // never the requests' queue.
                None => match tokio::time::timeout(BUSY_POOL_WAIT, self.db.acquire()).await {
                    Ok(connection) => connection?,
                    Err(_) => return Ok(None),
                },
            };
            super::tenants::admin_key_tenant(&mut connection, key_hash).await
        };
        match tokio::time::timeout(KEY_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(tenant)) => Ok(tenant),
            Ok(Err(error)) if super::is_unavailable(&error) => Err(error),
            Ok(Err(error)) => {
                tracing::warn!(%error, "admin key lookup failed; the key is refused");
                Ok(None)
            }
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Waits, for at most `within`, until this process's snapshot includes every change to
    /// `tenant_id` committed before the call; false if it did not in time (the listener is
    /// reconnecting: the change still arrives with the next reload).
    pub async fn written(&self, tenant_id: Uuid, within: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        // Any reload numbered after this one begins after the caller's commit, so it sees it.
        let target = self.begun.load(Ordering::SeqCst) + 1;
        self.requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant_id);
        self.wake.notify_one();
        let seen = tokio::time::timeout(
            within,
            loaded.wait_for(|loaded| loaded.covers(tenant_id, target)),
        )
        .await;
        matches!(seen, Ok(Ok(_)))
    }

    /// The number of a reload about to begin.
    fn begin(&self) -> u64 {
        self.begun.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn take_requested(&self) -> HashSet<Uuid> {
        std::mem::take(&mut *self.requested.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub async fn reload_all(&self) -> Result<()> {
        // Taken first: a request made after this reload's number is taken is served by a later one.
        self.take_requested();
        let reload = self.begin();
        let snapshot = load_all(&self.db).await?;
        self.current.store(Arc::new(snapshot));
        self.loaded.send_modify(|loaded| loaded.all = reload);
        crate::meters::config_reload("all");
        Ok(())
    }

    pub async fn reload_tenant(&self, tenant_id: Uuid) -> Result<()> {
        let reload = self.begin();
        let tenant = load_tenant(&self.db, tenant_id).await?;
        // Reloads run one at a time (a single listener task), so read-modify-write is safe.
        let next = self.current.load().with_tenant(tenant_id, tenant);
        self.current.store(Arc::new(next));
        self.loaded.send_modify(|loaded| {
            loaded.tenants.insert(tenant_id, reload);
        });
        crate::meters::config_reload("tenant");
        Ok(())
    }

    /// Reloads the tenants of the notifications received so far and of the writes waiting,
    /// each once.
    async fn reload_changed(&self, first: Option<&str>, listener: &mut PgListener) -> Result<()> {
        let mut tenants = HashSet::new();
        let mut all = false;
        let mut note = |payload: &str| match tenant_of(payload) {
            Some(tenant_id) => {
                tenants.insert(tenant_id);
            }
            None => all = true,
        };
        if let Some(payload) = first {
            note(payload);
        }
        while let Some(notification) = listener.next_buffered() {
            note(notification.payload());
        }
        if all {
            return self.reload_all().await;
        }
        tenants.extend(self.take_requested());
        for tenant_id in tenants {
            self.reload_tenant(tenant_id).await?;
        }
        Ok(())
    }

    /// Follows the `gavel_config` channel until the process ends: reloads a tenant on each
    /// notification, everything after a reconnection and every minute.
    pub async fn follow_changes(self: Arc<Self>) {
        loop {
            if let Err(error) = self.listen_until_lost().await {
                tracing::warn!(error = %format!("{error:#}"), "configuration listener failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Listens until the connection is lost (`Ok`) or cannot be set up (`Err`).
    async fn listen_until_lost(&self) -> Result<()> {
        let mut listener = PgListener::connect_with(&self.db).await?;
        // Notifications lost with a connection must not be waited for: the caller reconnects.
        listener.eager_reconnect(false);
        listener.listen(CONFIG_CHANNEL).await?;
        // Listening first, then loading: a change committed in between is seen by one or the
        // other. Anything may have changed while no listener was connected.
        self.reload_all().await?;
        let mut timer = tokio::time::interval(FULL_RELOAD_EVERY);
        timer.tick().await;
        loop {
            tokio::select! {
                notification = listener.try_recv() => match notification? {
                    Some(notification) => {
                        self.reload_changed(Some(notification.payload()), &mut listener).await?;
                    }
                    None => {
                        tracing::warn!("configuration listener connection lost; reconnecting");
                        return Ok(());
                    }
                },
                () = self.wake.notified() => self.reload_changed(None, &mut listener).await?,
                _ = timer.tick() => self.reload_all().await?,
            }
        }
    }
}

/// The tenant a notification names; `None` means everything may have changed.
fn tenant_of(payload: &str) -> Option<Uuid> {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|v| v.get("tenant_id")?.as_str()?.parse::<Uuid>().ok())
}

#[derive(FromRow)]
struct TenantRow {
    id: Uuid,
    timezone: String,
    #[sqlx(flatten)]
    breaker: super::settings::BreakerRow,
}

/// The rows of one tenant (`Some`) or of all tenants (`None`).
struct Rows {
    tenants: Vec<TenantRow>,
    partners: Vec<PartnerRow>,
    buyers: Vec<BuyerRow>,
    offers: Vec<OfferRow>,
    campaigns: Vec<CampaignRow>,
    contracts: Vec<ContractRow>,
    suppression_lists: Vec<SuppressionListRow>,
    admin_keys: Vec<(Uuid, Vec<u8>)>,
}

async fn fetch_rows(db: &PgPool, tenant: Option<Uuid>) -> Result<Rows> {
    // One read-only transaction: the tables are read at one consistent point in time.
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let tenants = sqlx::query_as(super::settings::TENANTS_WITH_BREAKER)
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
    let partners = admin::loaded::<Partners>(&mut tx, tenant).await?;
    let buyers = admin::loaded::<Buyers>(&mut tx, tenant).await?;
    let offers = admin::loaded::<Offers>(&mut tx, tenant).await?;
    let campaigns = admin::loaded::<Campaigns>(&mut tx, tenant).await?;
    let contracts = admin::loaded::<Contracts>(&mut tx, tenant).await?;
    let suppression_lists = admin::loaded::<SuppressionLists>(&mut tx, tenant).await?;
    let admin_keys = sqlx::query_as(
        "SELECT tenant_id, key_hash FROM api_keys
         WHERE ($1::uuid IS NULL OR tenant_id = $1) AND revoked_at IS NULL",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Rows {
        tenants,
        partners,
        buyers,
        offers,
        campaigns,
        contracts,
        suppression_lists,
        admin_keys,
    })
}

async fn load_all(db: &PgPool) -> Result<Snapshot> {
    let rows = fetch_rows(db, None)
        .await
        .context("cannot load the configuration")?;
    let tenants = compile(rows);
    let mut snapshot = Snapshot::default();
    for tenant in tenants {
        snapshot = snapshot.with_tenant(tenant.id, Some(tenant));
    }
    Ok(snapshot)
}

async fn load_tenant(db: &PgPool, tenant_id: Uuid) -> Result<Option<TenantConfig>> {
    let rows = fetch_rows(db, Some(tenant_id))
        .await
        .context("cannot load the configuration")?;
    Ok(compile(rows).into_iter().next())
}

fn log_invalid(kind: &str, tenant_id: Uuid, id: Uuid, errors: &[ConfigError]) {
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    tracing::error!(%tenant_id, %id, kind, ?errors, "configuration does not compile; left out of auctions");
}

/// Compiles rows into tenants. A row whose configuration does not compile (a bad SQL edit) is
/// left out of auctions and logged, rather than failing the whole tenant.
fn compile(rows: Rows) -> Vec<TenantConfig> {
    let mut tenants: HashMap<Uuid, TenantConfig> = HashMap::new();
    for row in rows.tenants {
        let Ok(timezone) = Tz::from_str(&row.timezone) else {
            log_invalid(
                "tenant",
                row.id,
                row.id,
                &[ConfigError::new("/timezone", "unknown timezone")],
            );
            continue;
        };
        tenants.insert(
            row.id,
            TenantConfig {
                id: row.id,
                timezone,
                partners: HashMap::new(),
                partner_names: HashMap::new(),
                buyers: HashMap::new(),
                offers: HashMap::new(),
                campaigns: HashMap::new(),
                posting_keys: Vec::new(),
                admin_keys: Vec::new(),
                breaker: row.breaker.settings(),
                suppression_list_names: HashMap::new(),
            },
        );
    }
    for (tenant_id, hash) in rows.admin_keys {
        if let (Some(tenant), Ok(hash)) = (tenants.get_mut(&tenant_id), hash.try_into()) {
            tenant.admin_keys.push(hash);
        }
    }
    for row in rows.partners {
        if let Some(tenant) = tenants.get_mut(&row.tenant_id) {
            tenant.partners.insert(row.id, status(&row.status));
            tenant.partner_names.insert(row.id, row.name.clone());
        }
    }
    for row in rows.buyers {
        if let Some(tenant) = tenants.get_mut(&row.tenant_id) {
            // A buyer whose caps do not compile buys nothing (its contracts see no buyer).
            let caps = match CompiledCaps::compile(&row.caps) {
                Ok(caps) => caps,
                Err(errors) => {
                    log_invalid("buyer", row.tenant_id, row.id, &errors);
                    continue;
                }
            };
            let buyer = BuyerConfig {
                id: row.id,
                status: status(&row.status),
                credit_limit: Money::from_cents(row.credit_limit_cents),
                caps,
            };
            tenant.buyers.insert(row.id, buyer);
        }
    }
    // Only an active list suppresses: the others are left out of what offers and contracts name.
    let mut active_lists: HashSet<(Uuid, Uuid)> = HashSet::new();
    for row in rows.suppression_lists {
        if let Some(tenant) = tenants.get_mut(&row.tenant_id) {
            if status(&row.status) == Status::Active {
                active_lists.insert((row.tenant_id, row.id));
            }
            tenant.suppression_list_names.insert(row.id, row.name);
        }
    }
    let active = |tenant_id: Uuid, ids: &[Uuid]| -> Vec<Uuid> {
        ids.iter()
            .copied()
            .filter(|id| active_lists.contains(&(tenant_id, *id)))
            .collect()
    };
    let mut offers: HashMap<(Uuid, Uuid), OfferConfig> = HashMap::new();
    for row in rows.offers {
        match compile_offer(&row) {
            Ok(mut offer) => {
                offer.suppression_lists = active(row.tenant_id, &row.suppression_list_ids).into();
                offers.insert((row.tenant_id, row.id), offer);
            }
            Err(errors) => log_invalid("offer", row.tenant_id, row.id, &errors),
        }
    }
    for row in rows.contracts {
        let Some(offer) = offers.get_mut(&(row.tenant_id, row.offer_id)) else {
            continue;
        };
        match compile_contract(&row, &offer.schema) {
            Ok(mut contract) => {
                // The offer's lists first: they are what the contract shares with the others.
                let mut lists = offer.suppression_lists.to_vec();
                add_new(
                    &mut lists,
                    &active(row.tenant_id, &row.suppression_list_ids),
                );
                contract.suppression_lists = lists;
                offer.contracts.push(Arc::new(contract))
            }
            Err(errors) => log_invalid("contract", row.tenant_id, row.id, &errors),
        }
    }
    // What a consumer of each offer is looked up in: every list of the offer's contracts.
    for offer in offers.values_mut() {
        let mut lists = offer.suppression_lists.to_vec();
        for contract in &offer.contracts {
            add_new(&mut lists, &contract.suppression_lists);
        }
        offer.suppression_lists = lists.into();
    }
    for ((tenant_id, offer_id), offer) in offers {
        if let Some(tenant) = tenants.get_mut(&tenant_id) {
            tenant.offers.insert(offer_id, Arc::new(offer));
        }
    }
    for row in rows.campaigns {
        let Some(tenant) = tenants.get_mut(&row.tenant_id) else {
            continue;
        };
        match compile_campaign(&row) {
            Ok((hash, campaign)) => {
                tenant.posting_keys.push((hash, campaign.id));
                tenant.campaigns.insert(campaign.id, Arc::new(campaign));
            }
            Err(errors) => log_invalid("campaign", row.tenant_id, row.id, &errors),
        }
    }
    tenants.into_values().collect()
}

/// Appends those of `ids` that `lists` does not hold yet, in order.
fn add_new(lists: &mut Vec<Uuid>, ids: &[Uuid]) {
    for id in ids {
        if !lists.contains(id) {
            lists.push(*id);
        }
    }
}

fn compile_offer(row: &OfferRow) -> Result<OfferConfig, Vec<ConfigError>> {
    let mode = row.mode().map_err(|e| vec![e])?;
    let require_consent = row.require_consent().map_err(|e| vec![e])?;
    let (distribution, strategy) = row.routing().map_err(|e| vec![e])?;
    let rules = OfferRules {
        mode,
        max_buyers: u32::try_from(row.max_buyers).unwrap_or(0),
        exclusive_floor: Money::from_cents(row.exclusive_floor_cents),
        dedup_days: u32::try_from(row.dedup_days).unwrap_or(0),
        require_consent,
        distribution,
        strategy,
    };
    rules.validate()?;
    let schema = CompiledSchema::compile(&row.fields)?;
    Ok(OfferConfig {
        id: row.id,
        name: row.name.clone(),
        status: status(&row.status),
        rules,
        ping_ttl_seconds: u32::try_from(row.ping_ttl_seconds).unwrap_or(300),
        max_wait_ms: row.max_wait_ms.and_then(|ms| u32::try_from(ms).ok()),
        schema,
        contracts: Vec::new(),
        cascade: CascadeRules::parse(&row.cascade, "/cascade")?,
        suppression_lists: Arc::new([]),
        verification: crate::verification::parse(&row.verification, "/verification")?.into(),
    })
}

fn compile_contract(
    row: &ContractRow,
    schema: &CompiledSchema,
) -> Result<Contract, Vec<ConfigError>> {
    let config = ContractConfig {
        id: row.id,
        buyer_id: row.buyer_id,
        status: status(&row.status),
        priority: row.priority,
        pricing: row.pricing.clone(),
        filters: row.filters.clone(),
        schedule: row.schedule.clone().unwrap_or(Value::Null),
        caps: row.caps.clone(),
    };
    let compiled = CompiledContract::compile(&config, schema);
    let delivery = DeliveryConfig::parse(&row.delivery);
    let notices =
        crate::notices::NoticeUrls::compile(row.win_url.as_deref(), row.loss_url.as_deref());
    match (compiled, delivery, notices) {
        (Ok(compiled), Ok(delivery), Ok(notices)) => Ok(Contract {
            compiled,
            name: row.name.clone(),
            dedup_days: u32::try_from(row.dedup_days).unwrap_or(0),
            delivery,
            weight: u32::try_from(row.weight).unwrap_or(crate::auction::DEFAULT_WEIGHT),
            notices,
            suppression_lists: Vec::new(),
        }),
        (compiled, delivery, notices) => Err([compiled.err(), delivery.err(), notices.err()]
            .into_iter()
            .flatten()
            .flatten()
            .collect()),
    }
}

fn compile_campaign(row: &CampaignRow) -> Result<([u8; 32], CampaignConfig), Vec<ConfigError>> {
    let hash: [u8; 32] = row
        .posting_key_hash
        .as_slice()
        .try_into()
        .map_err(|_| vec![ConfigError::new("/posting_key_hash", "must be 32 bytes")])?;
    let payout = row.payout().map_err(|e| vec![e])?;
    Ok((
        hash,
        CampaignConfig {
            id: row.id,
            partner_id: row.partner_id,
            offer_id: row.offer_id,
            status: status(&row.status),
            payout,
            min_payout: Money::from_cents(row.min_payout_cents),
            ping_rate_per_second: row.ping_rate_per_second.and_then(|r| u32::try_from(r).ok()),
        },
    ))
}
