-- Consent verification on the post (issue 20 part 1, docs/verification.md).

-- An offer's verification steps, in order: TrustedForm, Jornaya, a generic HTTP hook. Their
-- credentials are stored as written (the admin API shows them masked).
ALTER TABLE offers ADD COLUMN verification jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(verification) = 'array');

-- What the steps found for a posted lead (provider, outcome, reason, cached, time taken: never
-- PII, never credentials), shown in the ping's explain. NULL: the offer had no steps.
ALTER TABLE leads ADD COLUMN verification jsonb;

-- A winner whose post failed a required verification step: not sold, nothing reserved.
ALTER TABLE distribution_winners DROP CONSTRAINT distribution_winners_disposition_check;
ALTER TABLE distribution_winners ADD CONSTRAINT distribution_winners_disposition_check
    CHECK (disposition IN ('pending', 'sold', 'rejected', 'failed', 'capped', 'insufficient_funds',
                           'duplicate', 'not_accepted', 'suppressed', 'consent_unverified')) NOT VALID;
