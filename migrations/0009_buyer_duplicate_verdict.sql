-- A buyer may answer a delivery "duplicate" (issue 16's response rules): its own dedup found the
-- consumer. The verdict is kept like the others until the sale is settled `duplicate`.
ALTER TABLE lead_sales DROP CONSTRAINT lead_sales_verdict_check;
ALTER TABLE lead_sales
    ADD CONSTRAINT lead_sales_verdict_check
    CHECK (verdict IN ('accepted', 'duplicate', 'rejected', 'failed'));
