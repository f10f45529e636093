-- The money after the sale (docs/returns.md): the partner's balance, returns, payments.

-- What the exchange owes the partner: balance = sum of the partner's ledger entries.
ALTER TABLE partners ADD COLUMN balance_cents bigint NOT NULL DEFAULT 0;

-- A partner's balance moves with every sale: as for buyers, only its configuration columns
-- touch updated_at or trigger a configuration reload (from the carry-over below on).
DROP TRIGGER partners_updated_at ON partners;
CREATE TRIGGER partners_updated_at BEFORE UPDATE OF name, status ON partners
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
DROP TRIGGER partners_notify ON partners;
CREATE TRIGGER partners_notify AFTER INSERT OR DELETE OR UPDATE OF name, status ON partners
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();

-- The balance moves with every partner entry, by this trigger, in the statement that writes
-- the entry: Gavel never updates it itself. So it holds through a rolling upgrade, when a
-- process of the previous release (which knows no partner balance) completes a sale and
-- writes its `sale` entry. A buyer's balance stays Gavel's to move (gavel_reserve checks it
-- under the row's lock).
CREATE FUNCTION gavel_partner_balance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE partners SET balance_cents = balance_cents + NEW.amount_cents
    WHERE tenant_id = NEW.tenant_id AND id = NEW.partner_id;
    RETURN NULL;
END;
$$;
-- Created before the carry-over: it locks out writers of entries until the migration
-- commits, so every entry is either in the carry-over's sum or moves the balance itself.
CREATE TRIGGER ledger_entries_partner_balance AFTER INSERT ON ledger_entries
    FOR EACH ROW WHEN (NEW.account = 'partner') EXECUTE FUNCTION gavel_partner_balance();

-- Existing sales already wrote their partner entries (`sale`, the payout): the balance is
-- carried over from them.
UPDATE partners p
SET balance_cents = coalesce(
    (SELECT sum(e.amount_cents) FROM ledger_entries e
     WHERE e.tenant_id = p.tenant_id AND e.partner_id = p.id), 0);

-- A contract's return settings; returns are off until the operator allows them.
ALTER TABLE contracts ADD COLUMN returns jsonb NOT NULL DEFAULT
    '{"allowed": false, "window_days": 7, "max_percent": 10, "period": "month", "auto_approve": false,
      "reasons": ["bad_phone", "bad_email", "duplicate", "not_interested", "wrong_person", "fraud", "other"]}'
    CHECK (jsonb_typeof(returns) = 'object');

-- Whether an approved return takes the partner's payout back.
ALTER TABLE offers ADD COLUMN return_policy text NOT NULL DEFAULT 'reverse_payout'
    CHECK (return_policy IN ('reverse_payout', 'exchange_absorbs'));

-- A sale a buyer returned: status `returned` (its return approved). The new constraints of
-- this migration are NOT VALID, as in migrations 0010 and 0011: they hold for every row
-- written from now on, and the existing rows (which satisfy them: they only allow more) are
-- not scanned under the ACCESS EXCLUSIVE lock.
ALTER TABLE lead_sales DROP CONSTRAINT lead_sales_status_check;
ALTER TABLE lead_sales ADD CONSTRAINT lead_sales_status_check CHECK (status IN (
    'pending', 'sold', 'rejected', 'failed', 'capped', 'insufficient_funds', 'duplicate',
    'not_accepted', 'returned')) NOT VALID;

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
    FOREIGN KEY (tenant_id, return_id) REFERENCES returns (tenant_id, id) NOT VALID;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_cause;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind CHECK (
    (account = 'buyer' AND kind IN ('funds', 'sale', 'release', 'return'))
    OR (account = 'partner' AND kind IN ('sale', 'return', 'payment', 'adjustment'))) NOT VALID;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_cause CHECK (
    (kind IN ('funds', 'payment', 'adjustment')) = (sale_id IS NULL)
    AND (kind = 'return') = (return_id IS NOT NULL)) NOT VALID;
-- A partner's ledger, page by page (as ledger_entries_buyer_id for buyers).
CREATE INDEX ledger_entries_partner_id ON ledger_entries (tenant_id, partner_id, id) WHERE partner_id IS NOT NULL;

-- A return's approval as one call, as a sale's release is (migration 0016): the cap counters
-- and the buyer's row are held for the time the database needs, not across round trips.
-- `p_periods`/`p_starts` and `p_buyer_*` are the periods of the sale's reservation (its
-- `reserved_caps`, in their order) that are still current: Gavel decides which (a period
-- already over is left as it was counted). `p_reversed` is what the partner is debited (0
-- under `exchange_absorbs`).
--
-- The return's status is the gate, first: no row when the return was not `requested` any
-- more (decided by another call), and then nothing changed. Lock order, as everywhere in
-- Gavel: the return, the sale's row, the contract's counters, the buyer's counters, the buyer,
-- then the partner (by the trigger of its `return` entry). A sale not `sold` (only an edit
-- in SQL gets there: one open return per sale) raises `returns_sale_sold`, and the caller's
-- transaction rolls back. Returns the approved return, as `returns` plus the sale's ping.
CREATE FUNCTION gavel_approve_return(
    p_tenant         uuid,
    p_return         uuid,
    p_reversed       bigint,
    p_note           text,
    p_now            timestamptz,
    p_periods        text[],
    p_starts         timestamptz[],
    p_buyer_periods  text[],
    p_buyer_starts   timestamptz[],
    p_buyer_entry    uuid,
    p_partner_entry  uuid
) RETURNS TABLE (
    id uuid, sale_id uuid, lead_id uuid, ping_id uuid, contract_id uuid, buyer_id uuid,
    partner_id uuid, offer_id uuid, status text, reason text, note text, price_cents bigint,
    payout_reversed_cents bigint, decision_note text, requested_at timestamptz,
    decided_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_sale   uuid;
    sold     record;
BEGIN
    UPDATE returns r
    SET status = 'approved', payout_reversed_cents = p_reversed, decision_note = p_note,
        decided_at = p_now
    WHERE r.tenant_id = p_tenant AND r.id = p_return AND r.status = 'requested'
    RETURNING r.sale_id INTO v_sale;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE lead_sales s SET status = 'returned'
    WHERE s.tenant_id = p_tenant AND s.id = v_sale AND s.status = 'sold' AND NOT s.test
    RETURNING s.contract_id, s.buyer_id, s.partner_id, s.price_cents INTO sold;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the sale % of return % is not sold', v_sale, p_return
            USING ERRCODE = 'check_violation', CONSTRAINT = 'returns_sale_sold';
    END IF;
    PERFORM gavel_give_back_caps(p_tenant, sold.contract_id, p_periods, p_starts,
                                 sold.price_cents, cardinality(p_periods));
    PERFORM gavel_give_back_buyer_caps(p_tenant, sold.buyer_id, p_buyer_periods, p_buyer_starts,
                                       sold.price_cents, cardinality(p_buyer_periods));
    UPDATE buyers b SET balance_cents = b.balance_cents + sold.price_cents
    WHERE b.tenant_id = p_tenant AND b.id = sold.buyer_id;
    INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, sale_id,
                                return_id, created_at)
    VALUES (p_tenant, p_buyer_entry, 'buyer', sold.buyer_id, 'return', sold.price_cents, v_sale,
            p_return, p_now);
    IF p_reversed > 0 THEN
        INSERT INTO ledger_entries (tenant_id, id, account, partner_id, kind, amount_cents,
                                    sale_id, return_id, created_at)
        VALUES (p_tenant, p_partner_entry, 'partner', sold.partner_id, 'return', -p_reversed,
                v_sale, p_return, p_now);
    END IF;
    RETURN QUERY
    SELECT r.id, r.sale_id, r.lead_id, s.ping_id, r.contract_id, r.buyer_id, r.partner_id,
           r.offer_id, r.status, r.reason, r.note, r.price_cents, r.payout_reversed_cents,
           r.decision_note, r.requested_at, r.decided_at
    FROM returns r JOIN lead_sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
    WHERE r.tenant_id = p_tenant AND r.id = p_return;
END;
$$;
