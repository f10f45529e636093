-- The money after the sale (docs/returns.md): the partner's balance, returns, payments.

-- What the exchange owes the partner. Changed only together with a partner ledger entry, in
-- one statement or transaction: balance = sum of the partner's ledger entries. Existing sales
-- already wrote their partner entries (`sale`, the payout), so the balance is carried over
-- from them.
ALTER TABLE partners ADD COLUMN balance_cents bigint NOT NULL DEFAULT 0;
UPDATE partners p
SET balance_cents = coalesce(
    (SELECT sum(e.amount_cents) FROM ledger_entries e
     WHERE e.tenant_id = p.tenant_id AND e.partner_id = p.id), 0);

-- A partner's balance moves with every sale: as for buyers, only its configuration columns
-- touch updated_at or trigger a configuration reload.
DROP TRIGGER partners_updated_at ON partners;
CREATE TRIGGER partners_updated_at BEFORE UPDATE OF name, status ON partners
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
DROP TRIGGER partners_notify ON partners;
CREATE TRIGGER partners_notify AFTER INSERT OR DELETE OR UPDATE OF name, status ON partners
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();

-- A contract's return settings; returns are off until the operator allows them.
ALTER TABLE contracts ADD COLUMN returns jsonb NOT NULL DEFAULT
    '{"allowed": false, "window_days": 7, "max_percent": 10, "period": "month", "auto_approve": false,
      "reasons": ["bad_phone", "bad_email", "duplicate", "not_interested", "wrong_person", "fraud", "other"]}'
    CHECK (jsonb_typeof(returns) = 'object');

-- Whether an approved return takes the partner's payout back.
ALTER TABLE offers ADD COLUMN return_policy text NOT NULL DEFAULT 'reverse_payout'
    CHECK (return_policy IN ('reverse_payout', 'exchange_absorbs'));

-- A sale a buyer returned: status `returned` (its return approved).
ALTER TABLE lead_sales DROP CONSTRAINT lead_sales_status_check;
ALTER TABLE lead_sales ADD CONSTRAINT lead_sales_status_check CHECK (status IN (
    'pending', 'sold', 'rejected', 'failed', 'capped', 'insufficient_funds', 'duplicate',
    'not_accepted', 'returned')) NOT VALID;
ALTER TABLE lead_sales VALIDATE CONSTRAINT lead_sales_status_check;

-- A buyer's return of a sold lead: requested, then approved or denied once.
CREATE TABLE returns (
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    id                     uuid NOT NULL,
    sale_id                uuid NOT NULL,
    lead_id                uuid NOT NULL,
    contract_id            uuid NOT NULL,
    buyer_id               uuid NOT NULL,
    partner_id             uuid NOT NULL,
    offer_id               uuid NOT NULL,
    status                 text NOT NULL CHECK (status IN ('requested', 'approved', 'denied')),
    -- one of the contract's `returns.reasons` (a code: bounded, so metrics may count by it)
    reason                 text NOT NULL CHECK (reason ~ '^[a-z][a-z0-9_]{0,39}$'),
    note                   text CHECK (length(note) <= 500),
    -- the sale's price: refunded to the buyer on approval
    price_cents            bigint NOT NULL CHECK (price_cents >= 0),
    -- set on approval: what the partner was debited (0 when the offer's policy is
    -- exchange_absorbs, or the payout was 0)
    payout_reversed_cents  bigint CHECK (payout_reversed_cents >= 0),
    decision_note          text CHECK (length(decision_note) <= 500),
    requested_at           timestamptz NOT NULL,
    decided_at             timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, sale_id) REFERENCES lead_sales (tenant_id, id),
    FOREIGN KEY (tenant_id, contract_id) REFERENCES contracts (tenant_id, id),
    FOREIGN KEY (tenant_id, buyer_id) REFERENCES buyers (tenant_id, id),
    FOREIGN KEY (tenant_id, partner_id) REFERENCES partners (tenant_id, id),
    CONSTRAINT returns_decided CHECK ((status = 'requested') = (decided_at IS NULL)),
    CONSTRAINT returns_reversal CHECK ((status = 'approved') = (payout_reversed_cents IS NOT NULL))
);
-- At most one return of a sale is open or approved: a denied one may be requested again.
CREATE UNIQUE INDEX returns_sale_open ON returns (tenant_id, sale_id) WHERE status <> 'denied';
CREATE INDEX returns_sale ON returns (tenant_id, sale_id);
-- The contract's return limit counts its returns requested in the period (denied ones aside).
CREATE INDEX returns_contract_time ON returns (tenant_id, contract_id, requested_at) WHERE status <> 'denied';
CREATE INDEX returns_buyer ON returns (tenant_id, buyer_id, id);
CREATE INDEX returns_status ON returns (tenant_id, status, id);

-- Ledger kinds. Buyer: funds (an operator's adjustment), sale, release, return (the price
-- refunded). Partner: sale (the payout owed), return (the payout taken back), payment (money
-- paid out to the partner, negative), adjustment (an operator's correction).
ALTER TABLE ledger_entries ADD COLUMN return_id uuid;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_return
    FOREIGN KEY (tenant_id, return_id) REFERENCES returns (tenant_id, id);
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_cause;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind CHECK (
    (account = 'buyer' AND kind IN ('funds', 'sale', 'release', 'return'))
    OR (account = 'partner' AND kind IN ('sale', 'return', 'payment', 'adjustment')));
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_cause CHECK (
    (kind IN ('funds', 'payment', 'adjustment')) = (sale_id IS NULL)
    AND (kind = 'return') = (return_id IS NOT NULL));
-- A partner's ledger, page by page (as ledger_entries_buyer_id for buyers).
CREATE INDEX ledger_entries_partner_id ON ledger_entries (tenant_id, partner_id, id) WHERE partner_id IS NOT NULL;
