-- Indexes for the admin API (see docs/schema.md).

-- The summary report reads a tenant's contract outcomes over a time range.
CREATE INDEX lead_distribution_time ON lead_distribution (tenant_id, created_at);

-- A lead's sales, for GET /v1/admin/leads/{id}.
CREATE INDEX lead_sales_lead ON lead_sales (tenant_id, lead_id);

-- A buyer's ledger, page by page (GET /v1/admin/buyers/{id}/ledger pages by id).
CREATE INDEX ledger_entries_buyer_id ON ledger_entries (tenant_id, buyer_id, id) WHERE buyer_id IS NOT NULL;
