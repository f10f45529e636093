-- Indexes for the admin API (see docs/schema.md).

-- The summary report reads a tenant's contract outcomes over a time range.
CREATE INDEX lead_distribution_time ON lead_distribution (tenant_id, created_at);

-- A lead's sales, for GET /v1/admin/leads/{id}.
CREATE INDEX lead_sales_lead ON lead_sales (tenant_id, lead_id);
