-- Issue 17, item 5: the failing-buyer breaker (docs/revenue-recovery.md §5).

-- A contract whose RTB or delivery endpoint's breaker is open is declined without a call.
-- Checked after the contract's own checks and before the bound on bid requests, so it comes
-- before rtb_limit.
ALTER TYPE decline_reason ADD VALUE 'buyer_unavailable' BEFORE 'rtb_limit';

-- Each tenant's breaker settings (GET/PATCH /v1/admin/settings), carried in the
-- configuration snapshot: the tenants trigger notifies running servers of a change.
-- Defaults fill existing rows without a rewrite (constant defaults).
ALTER TABLE tenants
    ADD COLUMN breaker_failures integer NOT NULL DEFAULT 5
        CONSTRAINT tenants_breaker_failures CHECK (breaker_failures BETWEEN 1 AND 100),
    ADD COLUMN breaker_window_ms integer NOT NULL DEFAULT 30000
        CONSTRAINT tenants_breaker_window_ms CHECK (breaker_window_ms BETWEEN 100 AND 3600000),
    ADD COLUMN breaker_cooldown_ms integer NOT NULL DEFAULT 30000
        CONSTRAINT tenants_breaker_cooldown_ms CHECK (breaker_cooldown_ms BETWEEN 100 AND 3600000);
