//! The partner's payout per sale (SPEC §4.3, §5.3) and the payout floor.

use crate::money::Money;

use super::config::PayoutRule;

impl PayoutRule {
    /// The partner's payout for a sale at `price`: never negative, never above the price.
    pub fn payout(self, price: Money) -> Money {
        let payout = match self {
            // A share above 100 % cannot be configured; capping keeps the invariant regardless.
            PayoutRule::Revshare { percent_bp } => price.percent_bp(percent_bp.min(10_000)),
            PayoutRule::Margin { amount } => {
                Money::from_cents(price.cents().saturating_sub(amount.cents()))
            }
            PayoutRule::Fixed { amount } => amount.min(price),
        };
        payout.min(price).max(Money::ZERO)
    }
}

/// The floor a payout must reach: the campaign's `min_payout`, raised (never lowered) by the
/// ping's own `min_payout`.
pub fn effective_floor(campaign_min_payout: Money, ping_min_payout: Option<Money>) -> Money {
    ping_min_payout.map_or(campaign_min_payout, |ping| campaign_min_payout.max(ping))
}

/// Whether `payout` may be offered: above zero and at least `floor` (otherwise `below_floor`).
pub fn meets_floor(payout: Money, floor: Money) -> bool {
    payout > Money::ZERO && payout >= floor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(c: i64) -> Money {
        Money::from_cents(c)
    }

    #[test]
    fn revshare_truncates_to_the_cent() {
        let rule = PayoutRule::Revshare { percent_bp: 7000 };
        assert_eq!(rule.payout(cents(1235)), cents(864)); // 70 % of 12.35 = 8.645
        assert_eq!(rule.payout(cents(1)), cents(0));
        assert_eq!(
            PayoutRule::Revshare { percent_bp: 10_000 }.payout(cents(999)),
            cents(999)
        );
        assert_eq!(
            PayoutRule::Revshare { percent_bp: 0 }.payout(cents(999)),
            cents(0)
        );
        assert_eq!(
            PayoutRule::Revshare { percent_bp: 12_000 }.payout(cents(999)),
            cents(999)
        );
    }

    #[test]
    fn margin_never_goes_below_zero() {
        let rule = PayoutRule::Margin { amount: cents(300) };
        assert_eq!(rule.payout(cents(1250)), cents(950));
        assert_eq!(rule.payout(cents(300)), cents(0));
        assert_eq!(rule.payout(cents(200)), cents(0));
    }

    #[test]
    fn fixed_never_exceeds_the_price() {
        let rule = PayoutRule::Fixed { amount: cents(800) };
        assert_eq!(rule.payout(cents(1250)), cents(800));
        assert_eq!(rule.payout(cents(500)), cents(500));
        assert_eq!(rule.payout(cents(-5)), cents(0));
    }

    #[test]
    fn the_ping_can_only_raise_the_floor() {
        assert_eq!(effective_floor(cents(200), None), cents(200));
        assert_eq!(effective_floor(cents(200), Some(cents(500))), cents(500));
        assert_eq!(effective_floor(cents(200), Some(cents(100))), cents(200));
    }

    #[test]
    fn zero_or_below_the_floor_is_refused() {
        assert!(meets_floor(cents(500), cents(500)));
        assert!(!meets_floor(cents(499), cents(500)));
        assert!(!meets_floor(cents(0), cents(0)));
        assert!(meets_floor(cents(1), cents(0)));
    }
}
