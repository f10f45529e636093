//! The post's states, each stored as text: the enum is the one place its spellings are
//! written (strum for the text, sqlx for the column, serde for the answer).

text_codes! {
    /// A sale's status (`lead_sales.status`), and a winner's final disposition
    /// (`distribution_winners.disposition`).
    #[derive(sqlx::Type)]
    #[sqlx(type_name = "text", rename_all = "snake_case")]
    pub enum SaleStatus {
        /// Reserved, being delivered.
        Pending,
        Sold,
        /// The buyer declined the lead.
        Rejected,
        /// The delivery failed, or the contract or buyer stopped since the ping.
        Failed,
        /// A cap filled since the ping.
        Capped,
        InsufficientFunds,
        /// The buyer bought this consumer within its dedup window.
        Duplicate,
        /// The partner left the bid out of `bid_ids`.
        NotAccepted,
        /// The consumer is on a suppression list of the contract or its offer
        /// (docs/suppression.md): nothing was reserved or delivered.
        Suppressed,
        /// Sold, then returned by the buyer (its return approved: docs/returns.md). Only the
        /// returns workflow writes it; a post never settles a sale so.
        Returned,
        /// A winner's disposition (never a sale's status) when a required consent
        /// verification step did not pass: nothing reserved, the buyer not called
        /// (docs/verification.md).
        ConsentUnverified,
    }
}

text_codes! {
    /// The buyer's verdict on a delivered sale (`lead_sales.verdict`), kept as soon as it is
    /// known so that the sweep settles the sale as the buyer decided.
    #[derive(sqlx::Type)]
    #[sqlx(type_name = "text", rename_all = "snake_case")]
    pub enum BuyerVerdict {
        Accepted,
        /// The buyer has this consumer already (its own dedup).
        Duplicate,
        Rejected,
        Failed,
    }
}

text_codes! {
    /// A settled post's status: its answer's `status` and its `posting_log.result`.
    #[derive(sqlx::Type)]
    #[sqlx(type_name = "text", rename_all = "snake_case")]
    pub enum PostStatus {
        Sold,
        PartiallySold,
        Unsold,
        /// A required consent verification step did not pass: no buyer called, nothing
        /// charged (docs/verification.md).
        ConsentUnverified,
    }
}

text_codes! {
    /// Which route a post came by (`posting_log.kind`).
    #[derive(sqlx::Type)]
    #[sqlx(type_name = "text", rename_all = "snake_case")]
    pub enum PostKind {
        Post,
        Direct,
    }
}

text_codes! {
    /// What `gavel_reserve` (migration 0003) answers, and `gavel_reserve_group` (0023) for
    /// each of its requests.
    #[derive(sqlx::Type)]
    #[sqlx(type_name = "text", rename_all = "snake_case")]
    pub enum ReserveOutcome {
        Reserved,
        Duplicate,
        Capped,
        InsufficientFunds,
    }
}

impl BuyerVerdict {
    /// The status a sale with this verdict is settled in: sold, or released as duplicate,
    /// rejected or failed.
    pub fn settles_as(self) -> SaleStatus {
        match self {
            Self::Accepted => SaleStatus::Sold,
            Self::Duplicate => SaleStatus::Duplicate,
            Self::Rejected => SaleStatus::Rejected,
            Self::Failed => SaleStatus::Failed,
        }
    }
}

/// The reason of a sale settled by the sweep with no verdict, or found settled with none.
pub const INTERRUPTED: &str = "interrupted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_and_write_their_stored_text() {
        assert_eq!(SaleStatus::InsufficientFunds.as_str(), "insufficient_funds");
        assert_eq!("not_accepted".parse(), Ok(SaleStatus::NotAccepted));
        assert_eq!(PostStatus::PartiallySold.to_string(), "partially_sold");
        assert_eq!(
            serde_json::to_string(&SaleStatus::NotAccepted).unwrap(),
            "\"not_accepted\""
        );
        assert!("settling".parse::<PostStatus>().is_err());
        assert_eq!(BuyerVerdict::Duplicate.as_str(), "duplicate");
        assert_eq!(BuyerVerdict::Duplicate.settles_as(), SaleStatus::Duplicate);
        assert_eq!("returned".parse(), Ok(SaleStatus::Returned));
    }
}
