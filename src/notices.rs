//! Win and loss notices (docs/revenue-recovery.md §7): a contract's `win_url` and `loss_url`
//! templates, compiled once when the configuration loads, rendered and sent (`GET`) in
//! background tasks from a bounded queue, so that a notice never delays a ping or a post.
//!
//! A notice is queued with `try_send`: a full queue drops it (counted). A dispatcher takes
//! each queued notice once one of `notice_concurrency` slots is free and sends it in a task of
//! its own, so a slow or dead endpoint holds up only its own notices. The task renders the
//! URL (each value URL-encoded), checks it against the outbound address policy and sends it
//! through the shared outbound client, with up to [`TRIES`] tries on a timeout, a connection
//! error or a 5xx. Every notice ends counted once in `gavel_notices_total{kind,outcome}`:
//! `sent`, `failed` or `dropped`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::auction::{ConfigError, DeclineReason, Prices, SaleType};
use crate::buyers::{Exchange, Outbound};
use crate::integration::UrlTemplate;
use crate::money::Money;
use crate::post::SaleStatus;
use crate::post::settle::SaleResult;
use crate::store::pings::DistributionRow;
use crate::store::sales::WonBid;
use crate::store::snapshot::{CampaignContext, Contract};

/// How many tries a notice gets.
pub const TRIES: u32 = 3;
/// Each try's timeout.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait before the second try; doubled before the third.
const BACKOFF: Duration = Duration::from_millis(100);

/// A contract's notice URL templates (at least one of them).
#[derive(Debug)]
pub struct NoticeUrls {
    pub win: Option<UrlTemplate>,
    pub loss: Option<UrlTemplate>,
}

impl NoticeUrls {
    /// Compiles a contract's `win_url` and `loss_url`; `None` when it has neither.
    pub fn compile(
        win: Option<&str>,
        loss: Option<&str>,
    ) -> Result<Option<Arc<NoticeUrls>>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut compile = |source: Option<&str>, pointer: &str| {
            source.and_then(|s| {
                UrlTemplate::compile(s, pointer)
                    .map_err(|e| errors.extend(e))
                    .ok()
            })
        };
        let win = compile(win, "/win_url");
        let loss = compile(loss, "/loss_url");
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok((win.is_some() || loss.is_some()).then(|| Arc::new(NoticeUrls { win, loss })))
    }
}

/// Which notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Win,
    Loss,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Win => "win",
            NoticeKind::Loss => "loss",
        }
    }
}

/// One notice to send: its contract's templates and the values they read.
pub struct Notice {
    pub kind: NoticeKind,
    pub urls: Arc<NoticeUrls>,
    pub ping_id: Uuid,
    pub lead_id: Option<Uuid>,
    pub contract_id: Uuid,
    pub rtb_ref: Option<String>,
    pub price: Option<Money>,
    pub sale_type: Option<SaleType>,
    pub reason: Option<&'static str>,
}

impl Notice {
    /// The rendered URL; `None` when the contract has no template of this kind.
    fn url(&self) -> Option<Result<String, String>> {
        let template = match self.kind {
            NoticeKind::Win => self.urls.win.as_ref(),
            NoticeKind::Loss => self.urls.loss.as_ref(),
        }?;
        let text = |value: Option<String>| value.unwrap_or_default();
        let values = [
            ("ping_id", self.ping_id.to_string()),
            ("lead_id", text(self.lead_id.map(|id| id.to_string()))),
            ("ref", text(self.rtb_ref.clone())),
            ("price", text(self.price.map(|p| p.to_string()))),
            ("reason", self.reason.unwrap_or_default().to_owned()),
            ("contract_id", self.contract_id.to_string()),
            (
                "sale_type",
                text(self.sale_type.map(|t| t.as_str().to_owned())),
            ),
        ];
        Some(template.render(&values).map_err(|e| e.0))
    }
}

/// The queue of notices: cloned into the state, fed by the ping and the post.
#[derive(Clone)]
pub struct Notices {
    sender: mpsc::Sender<Notice>,
}

impl Notices {
    /// A queue of `size` notices served by a dispatcher that sends each notice in a task of
    /// its own, at most `concurrency` at once, so that a slow or dead endpoint holds up only
    /// its own notices. The dispatcher's handle, to stop it at shutdown (aborting it stops
    /// the notices being sent with it).
    pub fn start(
        size: usize,
        concurrency: usize,
        http: Outbound,
    ) -> (Notices, Vec<tokio::task::AbortHandle>) {
        let (sender, receiver) = mpsc::channel(size.max(1));
        let dispatcher = tokio::spawn(dispatch(receiver, http, concurrency.max(1)));
        (Notices { sender }, vec![dispatcher.abort_handle()])
    }

    /// Queues `notice` without waiting: a full (or closed) queue drops it, counted.
    pub fn send(&self, notice: Notice) {
        if let Err(error) = self.sender.try_send(notice) {
            let notice = match error {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            crate::meters::notice(notice.kind.as_str(), "dropped");
        }
    }

    /// Queues each of `notices` (see [`Notices::send`]).
    pub fn send_all(&self, notices: Vec<Notice>) {
        for notice in notices {
            self.send(notice);
        }
    }
}

/// Takes the queued notices one by one, each once a slot is free, and sends it in a task of
/// its own. The tasks live in a `JoinSet` owned here: aborting the dispatcher aborts them.
async fn dispatch(mut receiver: mpsc::Receiver<Notice>, http: Outbound, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut sending = JoinSet::new();
    loop {
        // Finished tasks are reaped as we go (at most `concurrency` of them wait here).
        while sending.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(notice) = receiver.recv().await else {
            break;
        };
        let http = http.clone();
        sending.spawn(async move {
            let _slot = slot;
            let outcome = deliver(&http, &notice).await;
            crate::meters::notice(notice.kind.as_str(), outcome);
        });
    }
    // The queue is closed: the notices being sent finish.
    while sending.join_next().await.is_some() {}
}

/// Renders and sends one notice: `sent` or `failed`.
async fn deliver(http: &Outbound, notice: &Notice) -> &'static str {
    let url = match notice.url() {
        Some(Ok(url)) => url,
        Some(Err(error)) => {
            tracing::warn!(contract_id = %notice.contract_id, %error, "a notice's URL cannot be rendered");
            return "failed";
        }
        None => return "failed",
    };
    let allowed = reqwest::Url::parse(&url)
        .map_err(|_| "the URL is invalid".to_owned())
        .and_then(|parsed| http.policy().check_url(&parsed).map_err(|r| r.to_string()));
    if let Err(error) = allowed {
        tracing::warn!(contract_id = %notice.contract_id, %error, "a notice's URL is refused");
        return "failed";
    }
    let mut backoff = BACKOFF;
    for attempt in 1..=TRIES {
        let retry = match crate::buyers::get(http, &url, TRY_TIMEOUT).await {
            Exchange::Answer { status, .. } | Exchange::TooLarge { status } => status >= 500,
            Exchange::TimedOut | Exchange::Failed(_) => true,
        };
        if !retry {
            return "sent";
        }
        if attempt < TRIES {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::debug!(contract_id = %notice.contract_id, kind = notice.kind.as_str(), "a notice failed its last try");
    "failed"
}

/// The contract of `contract_id` among `contracts`, looked up at `hint` first (rows are in
/// the contracts' order).
fn contract_at(
    contracts: &[Arc<Contract>],
    hint: usize,
    contract_id: Uuid,
) -> Option<&Arc<Contract>> {
    contracts
        .get(hint)
        .filter(|c| c.compiled.id() == contract_id)
        .or_else(|| contracts.iter().find(|c| c.compiled.id() == contract_id))
}

/// A bid's price for `sale_type`, else its other price.
fn price_of(bid: Prices, sale_type: Option<SaleType>) -> (Option<Money>, Option<SaleType>) {
    let exclusive = bid.exclusive.map(|p| (p, SaleType::Exclusive));
    let shared = bid.shared.map(|p| (p, SaleType::Shared));
    let found = match sale_type {
        Some(SaleType::Shared) => shared.or(exclusive),
        _ => exclusive.or(shared),
    };
    (found.map(|f| f.0), found.map(|f| f.1))
}

/// At the ping, after selection: a loss notice for each bid that lost (`outbid`,
/// `below_floor`) of a contract with a `loss_url`, to queue ([`Notices::send_all`]) once the
/// ping is recorded. None for a test ping. Nothing is allocated when no contract of the offer
/// has a `loss_url`.
pub fn at_ping(
    campaign: &CampaignContext,
    ping_id: Uuid,
    sale_type: Option<SaleType>,
    test: bool,
    rows: &[DistributionRow],
) -> Vec<Notice> {
    let mut notices = Vec::new();
    if test {
        return notices;
    }
    let contracts = &campaign.offer.contracts;
    for (i, row) in rows.iter().enumerate() {
        let reason = match row.reason {
            Some(reason @ (DeclineReason::Outbid | DeclineReason::BelowFloor)) => reason,
            _ => continue,
        };
        let Some(contract) = contract_at(contracts, i, row.contract_id) else {
            continue;
        };
        let Some(urls) = contract.notices.as_ref().filter(|u| u.loss.is_some()) else {
            continue;
        };
        let (price, sale_type) = price_of(row.bid, sale_type);
        notices.push(Notice {
            kind: NoticeKind::Loss,
            urls: Arc::clone(urls),
            ping_id,
            lead_id: None,
            contract_id: row.contract_id,
            rtb_ref: row.rtb_ref.clone(),
            price,
            sale_type,
            reason: Some(reason.as_str()),
        });
    }
    notices
}

/// The won bids a post's notices need: all of them when a contract of the offer has a notice
/// URL (a runner-up's win names its slot's sale type), none (no allocation) otherwise, and
/// none for test traffic (a test post, or the post of a test ping), which sends no notice.
pub fn bids_to_notify(campaign: &CampaignContext, test: bool, bids: &[WonBid]) -> Vec<WonBid> {
    if !test && campaign.offer.contracts.iter().any(|c| c.notices.is_some()) {
        bids.to_vec()
    } else {
        Vec::new()
    }
}

/// At the post, from its final results: for each winning bid, a win notice when its own sale
/// ended `sold`, else a loss notice (reason: the sale's status); and a win notice for the
/// runner-up that bought a slot through the cascade (told `outbid` at the ping, it gets no
/// second loss when its attempt fails).
pub fn after_post(
    notices: &Notices,
    campaign: &CampaignContext,
    ping_id: Uuid,
    lead_id: Uuid,
    bids: &[WonBid],
    results: &[SaleResult],
) {
    if bids.is_empty() {
        return;
    }
    let contracts = &campaign.offer.contracts;
    let send = |kind: NoticeKind,
                contract_id: Uuid,
                rtb_ref: Option<&String>,
                price: Money,
                sale_type: Option<SaleType>,
                reason: Option<&'static str>| {
        let Some(urls) =
            contract_at(contracts, usize::MAX, contract_id).and_then(|c| c.notices.as_ref())
        else {
            return;
        };
        let has = match kind {
            NoticeKind::Win => urls.win.is_some(),
            NoticeKind::Loss => urls.loss.is_some(),
        };
        if has {
            notices.send(Notice {
                kind,
                urls: Arc::clone(urls),
                ping_id,
                lead_id: (kind == NoticeKind::Win).then_some(lead_id),
                contract_id,
                rtb_ref: rtb_ref.cloned(),
                price: Some(price),
                sale_type,
                reason,
            });
        }
    };
    for result in results {
        let Some(bid) = bids.iter().find(|b| b.bid_id == result.bid_id) else {
            continue;
        };
        let sale_type = bid.sale_type.parse().ok();
        let (kind, reason) = match result.own_status() {
            SaleStatus::Sold => (NoticeKind::Win, None),
            status => (NoticeKind::Loss, Some(status.as_str())),
        };
        let price = Money::from_cents(bid.price_cents);
        send(
            kind,
            bid.contract_id,
            bid.rtb_ref.as_ref(),
            price,
            sale_type,
            reason,
        );
        for attempt in result.attempts.iter().skip(1) {
            if attempt.status == SaleStatus::Sold {
                let (contract, rtb_ref) = (attempt.contract_id, attempt.rtb_ref.as_ref());
                send(
                    NoticeKind::Win,
                    contract,
                    rtb_ref,
                    attempt.price,
                    sale_type,
                    None,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_renders_its_values_and_only_its_kind() {
        let urls = NoticeUrls::compile(
            Some("http://b.example/win/{{ contract_id }}?p={{ price }}&lead={{ lead_id }}"),
            None,
        )
        .unwrap()
        .unwrap();
        let mut notice = Notice {
            kind: NoticeKind::Win,
            urls,
            ping_id: Uuid::from_u128(1),
            lead_id: Some(Uuid::from_u128(2)),
            contract_id: Uuid::from_u128(3),
            rtb_ref: Some("r&1".to_owned()),
            price: Some(Money::from_cents(1250)),
            sale_type: Some(SaleType::Exclusive),
            reason: None,
        };
        assert_eq!(
            notice.url().unwrap().unwrap(),
            format!(
                "http://b.example/win/{}?p=12.50&lead={}",
                Uuid::from_u128(3),
                Uuid::from_u128(2)
            )
        );
        notice.kind = NoticeKind::Loss;
        assert!(notice.url().is_none());
        assert!(NoticeUrls::compile(None, None).unwrap().is_none());
        let errors = NoticeUrls::compile(Some("{{ nope }}"), Some("ftp://x/")).unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/win_url", "/loss_url"]);
    }

    #[test]
    fn a_losing_bid_is_priced_for_the_sale_type_sold() {
        let bid = Prices {
            exclusive: Some(Money::from_cents(4000)),
            shared: Some(Money::from_cents(1000)),
        };
        assert_eq!(
            price_of(bid, Some(SaleType::Shared)),
            (Some(Money::from_cents(1000)), Some(SaleType::Shared))
        );
        assert_eq!(
            price_of(bid, None),
            (Some(Money::from_cents(4000)), Some(SaleType::Exclusive))
        );
        assert_eq!(price_of(Prices::default(), None), (None, None));
    }
}
