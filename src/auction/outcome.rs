//! The states a ping's auction ends in, as stored and sent: the ping's status and each
//! contract's outcome (why a contract declined is [`super::DeclineReason`]).

text_codes! {
    /// The status of an answered ping: its answer's `status` and its `posting_log.result` (a
    /// refused ping's result is its error code instead).
    pub enum PingStatus {
        /// At least one winner: the ping can be posted.
        Bids,
        NoBids,
        /// The consumer was sold on this offer within its dedup window.
        Duplicate,
    }
}

text_codes! {
    /// One contract's outcome on a ping, as `lead_distribution.outcome` shows it.
    pub enum ContractOutcome {
        Won,
        /// Bid but did not win.
        Outbid,
        /// Declined for any other reason (a `DeclineReason`).
        Declined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_stored_and_sent_text() {
        for (status, text) in [
            (PingStatus::Bids, "bids"),
            (PingStatus::NoBids, "no_bids"),
            (PingStatus::Duplicate, "duplicate"),
        ] {
            assert_eq!(status.as_str(), text);
            assert_eq!(text.parse::<PingStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), text);
        }
        for (outcome, text) in [
            (ContractOutcome::Won, "won"),
            (ContractOutcome::Outbid, "outbid"),
            (ContractOutcome::Declined, "declined"),
        ] {
            assert_eq!(outcome.as_str(), text);
            assert_eq!(text.parse::<ContractOutcome>(), Ok(outcome));
        }
        assert_eq!(
            super::super::DeclineReason::NoPriceForSaleType.as_str(),
            "no_price_for_sale_type"
        );
    }
}
